"""Device addresses, the ssh command line, and ssh's failure messages as one-line errors."""

from __future__ import annotations

import socket

import pytest

from edgekiln.compiler.deploy.transport import (
    Destination,
    DeviceFailure,
    SshOptions,
    classify_ssh_error,
    parse_destination,
)
from edgekiln.compiler.deploy.transport import run as ssh_run
from edgekiln.compiler.errors import DeployError


@pytest.mark.parametrize(("text", "expected"), [
    ("pi@raspberrypi.local", Destination("raspberrypi.local", "pi", None)),
    ("pi@10.0.0.5:2222", Destination("10.0.0.5", "pi", 2222)),
    ("lab-pi-3", Destination("lab-pi-3", None, None)),
    ("  root@[fe80::1]:22 ", Destination("fe80::1", "root", 22)),
])
def test_destinations_parse_and_print_back(text, expected):
    parsed = parse_destination(text)
    assert parsed == expected
    assert parse_destination(str(parsed)) == parsed


@pytest.mark.parametrize("text", ["pi@", "-oProxyCommand=x", "-o=y@h", "pi@host:0", "pi@host:70000", "a b",
                                  "pi@h:x"])
def test_bad_destinations_are_refused(text):
    with pytest.raises(DeployError, match="is not a device address"):
        parse_destination(text)


def test_device_ids_are_file_names_and_tell_ports_apart():
    ids = {parse_destination(t).device_id for t in ("pi@10.0.0.5:22", "pi@10.0.0.5:2222", "pi@[fe80::1]:22")}
    assert len(ids) == 3 and all("/" not in i and ":" not in i and "[" not in i for i in ids)


def test_ssh_argv_refuses_unknown_keys_unless_told_and_never_prompts(tmp_path):
    dest = Destination("10.0.0.5", "pi", 2222)
    strict = SshOptions().argv(dest, "true")
    assert "StrictHostKeyChecking=yes" in strict and "BatchMode=yes" in strict
    assert strict[-3:] == ["--", "pi@10.0.0.5", "true"] and strict[strict.index("-p") + 1] == "2222"
    assert "-F" not in strict and "-i" not in strict  # the user's own ~/.ssh/config and agent apply

    opts = SshOptions(identity=tmp_path / "key", config=tmp_path / "cfg", accept_new_host_keys=True)
    argv = opts.argv(Destination("board"), "true")
    assert "StrictHostKeyChecking=accept-new" in argv and "-p" not in argv
    assert argv[argv.index("-F") + 1] == str(tmp_path / "cfg")
    assert argv[argv.index("-i") + 1] == str(tmp_path / "key")
    assert argv[-2] == "board"


# ssh's stderr as OpenSSH 9.2 prints it (captured from the real client against a loopback sshd).
MISMATCH = """@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Offending ED25519 key in /tmp/kh:1
Host key for [127.0.0.1]:55315 has changed and you have requested strict checking.
Host key verification failed.
"""


@pytest.mark.parametrize(("stderr", "kind", "message"), [
    (MISMATCH, "host_key_mismatch", "host key mismatch: the device's key differs from the one in known"),
    ("No ED25519 host key is known for [127.0.0.1]:55315 and you have requested strict checking.\n"
     "Host key verification failed.\n", "host_key_unknown", "unknown host key"),
    ("root@127.0.0.1: Permission denied (publickey).\n", "auth",
     "authentication refused (root@127.0.0.1: Permission denied (publickey).)"),
    ("ssh: Could not resolve hostname nosuch.local: Name or service not known\n", "unreachable",
     "unreachable: host name not found"),
    ("ssh: connect to host 10.0.0.9 port 22: No route to host\n", "unreachable",
     "unreachable: No route to host"),
    ("ssh: connect to host 10.0.0.9 port 22: Connection timed out\n", "unreachable",
     "unreachable: Connection timed out"),
    ("kex_exchange_identification: read: Connection reset by peer\n", "unreachable", "unreachable:"),
    ("something new\n", "ssh", "ssh failed: something new"),
])
def test_ssh_failures_become_one_line_errors(stderr, kind, message):
    failure = classify_ssh_error(stderr)
    assert failure.kind == kind and failure.message.startswith(message)
    assert "\n" not in failure.one_line()


def test_a_closed_port_is_reported_unreachable_by_the_real_ssh_client(tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "cfg").write_text(f"UserKnownHostsFile {tmp_path}/kh\nGlobalKnownHostsFile /dev/null\n")
    with pytest.raises(DeviceFailure) as caught:
        ssh_run(Destination("127.0.0.1", "root", port), SshOptions(config=tmp_path / "cfg"), "true",
                timeout=30)
    assert caught.value.kind == "unreachable" and caught.value.message == "unreachable: Connection refused"
