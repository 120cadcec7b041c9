"""Small pieces the commands stand on: mount options, safe names, mountinfo, layout, exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from panfs import config, exitcodes, mount_options, mounts
from panfs.errors import ConfigError, UsageError
from panfs.logs import level, quote
from panfs.paths import Layout

ROOT = Path(__file__).resolve().parents[2]


def test_mount_options_like_mount8() -> None:
    o = mount_options.parse(["defaults,_netdev,uid=1000,gid=0", "umask=027,ro,allow_other",
                             "default_permissions,noatime,x-systemd.automount"])  # fmt: skip
    assert (o.uid, o.gid, o.umask, o.ro, o.allow_other) == (1000, 0, 0o027, True, True)
    assert mount_options.parse(["uid=root"]).uid == 0


def test_fstab_comment_option_is_ignored() -> None:
    """fstab's ``comment=...`` (systemd reads e.g. comment=systemd.automount) is not ours."""
    o = mount_options.parse(["comment=systemd.automount,uid=7", "comment=x=y"])
    assert (o.uid, o.extra) == (7, ())
    with pytest.raises(UsageError):
        mount_options.parse(["commentary=1"])


@pytest.mark.parametrize(
    ("opt", "words"),
    [
        ("bogus", "unknown mount option 'bogus'; known: uid=, gid=, umask="),
        ("umask=999", "umask=999: expected octal"),
        ("uid=no-such-user-here", "no such user"),
        ("ro=1", "unknown mount option 'ro=1'"),
    ],
)
def test_bad_mount_option_is_one_line(opt: str, words: str) -> None:
    with pytest.raises(UsageError) as info:
        mount_options.parse([opt])
    assert words in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("plain.txt", '"plain.txt"'),
        ("中文 名.txt", '"中文 名.txt"'),
        ("a\nWARNING forged", '"a\\nWARNING forged"'),
        ("\x1b[2Jclear", '"\\x1b[2Jclear"'),
        ('q"uote\\', '"q\\"uote\\\\"'),
        (b"bad\xff".decode("utf-8", "surrogateescape"), '"bad\\xff"'),
    ],
)
def test_quote_cannot_forge_a_line(name: str, shown: str) -> None:
    q = quote(name)
    assert q == shown
    assert q.isprintable()


def test_log_level_flags() -> None:
    import logging

    assert level("INFO") == logging.INFO
    assert level("INFO", verbose=1) == logging.DEBUG
    assert level("INFO", quiet=1) == logging.WARNING
    assert level("INFO", quiet=5) == logging.ERROR
    assert level("INFO", verbose=1, explicit="error") == logging.ERROR


def test_mountinfo_parsing(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "36 35 98:0 / /mnt/a\\040b rw - tmpfs tmpfs rw\n"
        "37 35 0:55 / /mnt/pan rw,nosuid - fuse.panfs panfs:/var/lib/pan\\040st rw\n"
    )
    es = mounts.entries(str(info))
    assert [(e.mountpoint, e.fstype) for e in es] == [
        ("/mnt/a b", "tmpfs"),
        ("/mnt/pan", "fuse.panfs"),
    ]
    assert not es[0].is_panfs
    assert es[1].is_panfs
    assert es[1].state_dir == Path("/var/lib/pan st")
    # the daemon's fsname is what state_dir reads back; a path the option string would break
    # (a comma ends the option, a backslash escapes) is left out
    assert mounts.MountEntry("/m", mounts.FSTYPE, mounts.fsname(Path("/s d"))).state_dir == Path(
        "/s d"
    )
    assert [mounts.fsname(Path(p)) for p in ("/a,b", "/a\\b", "/a\nb")] == ["panfs"] * 3


def test_dirs_inside_the_mount_point_are_refused(tmp_path: Path) -> None:
    mp = tmp_path / "mnt"
    mp.mkdir()
    (tmp_path / "link").symlink_to(mp)
    layout = Layout(tmp_path / "link" / "state", tmp_path / "cache", tmp_path / "log")
    with pytest.raises(ConfigError) as info:
        layout.refuse_inside(mp)
    assert str(info.value).startswith("state.dir ")
    assert "is inside the mount point" in str(info.value)
    Layout(tmp_path / "s", tmp_path / "c", tmp_path / "s" / "l").refuse_inside(mp)


def test_unwritable_dir_is_one_line(tmp_path: Path) -> None:
    cfg = config.from_mapping({"cache": {"dir": str(tmp_path / "f" / "x")}})
    (tmp_path / "f").write_text("a file")
    with pytest.raises(
        ConfigError, match=r"^cannot create cache dir .*: Not a directory; set cache.dir$"
    ):
        Layout.of(cfg).make()


def test_exit_code_table_is_documented_once_and_the_same() -> None:
    assert [c for c, _ in exitcodes.TABLE] == [0, 1, 2, 3, 130]
    for doc in (ROOT / "README.md", ROOT / "docs" / "commands.md"):
        text = doc.read_text()
        for code, _ in exitcodes.TABLE:
            assert re.search(rf"^\| `{code}` \|", text, re.M), f"{doc.name} lacks exit code {code}"
    assert UsageError("x").exit_code == exitcodes.USAGE
    assert ConfigError("x").exit_code == exitcodes.USAGE


def test_version_names_python_pyfuse3_and_libfuse() -> None:
    from tests.support.procs import run_panfs

    r = run_panfs(["--version"])
    assert r.returncode == 0
    assert re.fullmatch(
        r"panfs \S+, Python 3\.\d+\.\d+, pyfuse3 \S+, libfuse (\d+\.\d+\S*|not found)\n", r.stdout
    ), r.stdout


def test_every_command_help_has_an_example() -> None:
    from panfs import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():  # type: ignore[union-attr]
        text = p.format_help()
        assert "examples:" in text, name
        assert f"panfs {name}" in text.split("examples:")[1], name


def test_log_rotates_by_size(tmp_path: Path) -> None:
    import logging

    from panfs import logs

    log_file = tmp_path / "panfs.log"
    logs.setup(log_file, logging.INFO, max_size=2000, backups=2)
    try:
        for i in range(200):
            logging.getLogger("panfs.test").info("line %d %s", i, "x" * 40)
    finally:
        logging.basicConfig(handlers=[logging.NullHandler()], force=True)
    assert log_file.stat().st_size <= 2000
    assert (tmp_path / "panfs.log.1").exists()
    assert (tmp_path / "panfs.log.2").exists()
    assert not (tmp_path / "panfs.log.3").exists()
    assert "line 199" in log_file.read_text()


def test_state_or_cache_dir_inside_the_mount_point_is_one_line(tmp_path: Path) -> None:
    from tests.support.procs import run_panfs

    mp = tmp_path / "mp"
    mp.mkdir()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"cache:\n  dir: {mp / 'cache'}\n")
    r = run_panfs(["mount", "--config", str(cfg), str(mp)])
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"panfs mount: error: cache.dir {mp / 'cache'} is inside the mount point {mp}; "
        "set cache.dir to a local folder"
    ]


def test_no_log_message_can_forge_a_line(tmp_path: Path) -> None:
    import logging

    from panfs import logs

    log_file = tmp_path / "panfs.log"
    logs.setup(log_file, logging.INFO, max_size=1 << 20, backups=1)
    try:
        logging.getLogger("panfs.x").info("uploaded %s", "/a\n2026-01-01 ERROR forged\x1b[2J")
    finally:
        logging.basicConfig(handlers=[logging.NullHandler()], force=True)
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("uploaded /a\\n2026-01-01 ERROR forged\\x1b[2J")


@pytest.mark.parametrize(
    ("line", "expected"), [("panfs umo", "umount"), ("panfs umount --w", "--wait")]
)
def test_shell_completion(tmp_path: Path, line: str, expected: str) -> None:
    import os
    import subprocess

    from tests.support.procs import PANFS

    out = tmp_path / "completions"
    env = dict(os.environ, _ARGCOMPLETE="1", COMP_LINE=line, COMP_POINT=str(len(line)),
               _ARGCOMPLETE_STDOUT_FILENAME=str(out))  # fmt: skip
    r = subprocess.run(PANFS, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.read_text().split() == [expected]
