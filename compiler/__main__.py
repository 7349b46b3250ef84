from edgekiln.compiler.cli import app

app(prog_name="edgekiln")
