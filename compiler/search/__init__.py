"""The candidate search every build is: plan the variants, build them per format, judge and time them, choose."""
