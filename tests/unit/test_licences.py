"""The build-time licence collector (packaging/licences.py): a bundled distribution without a
licence text must stop the build, and the Debian copyright file must name every component.

Why these tests: the collector is the only guard between "a dependency dropped its LICENSE
file" and an installer that ships code without its licence.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "packaging"))
import licences  # noqa: E402


def _row(name: str, text: str = "MIT text", licence: str = "MIT License") -> dict[str, str]:
    return {
        "Name": name,
        "Version": "1.0",
        "License": licence,
        "LicenseText": text,
        "NoticeText": licences.UNKNOWN,
    }


def _no_fallback(name: str) -> list[tuple[str, str]]:
    return []


def test_top_level_names_of_modules_and_bundle_paths() -> None:
    assert licences.top_level_name("torch.nn.functional") == "torch"
    assert licences.top_level_name("torch/lib/libtorch_cpu.so") == "torch"
    assert licences.top_level_name("_cffi_backend.cpython-311-x86_64-linux-gnu.so") == (
        "_cffi_backend"
    )
    assert licences.top_level_name("six.pyc") == "six"
    mapping = {"torch": ["torch"], "yaml": ["PyYAML"], "vsr_desktop": ["vsr-desktop"]}
    found = licences.bundled_distributions(["torch.nn", "yaml", "vsr_desktop.cli"], mapping)
    assert found == {"torch": {"torch"}, "PyYAML": {"yaml"}}  # our own project is not third party


def test_a_bundled_distribution_without_a_licence_text_stops_the_build(tmp_path: Path) -> None:
    rows = [_row("good"), _row("bare", text=licences.UNKNOWN)]
    wanted = {"good": {"good"}, "bare": {"bare"}}
    with pytest.raises(licences.MissingLicence, match=r"bare 1\.0"):
        licences.write_distribution_licences(wanted, rows, tmp_path, fallback=_no_fallback)


def test_a_notice_alone_is_not_a_licence(tmp_path: Path) -> None:
    row = {**_row("noticed", text=licences.UNKNOWN), "NoticeText": "Portions (c) someone"}
    with pytest.raises(licences.MissingLicence, match="noticed"):
        licences.write_distribution_licences(
            {"noticed": {"noticed"}}, [row], tmp_path, fallback=_no_fallback
        )


def test_a_distribution_missing_from_the_metadata_stops_the_build(tmp_path: Path) -> None:
    with pytest.raises(licences.MissingLicence, match="ghost"):
        licences.write_distribution_licences({"ghost": {"ghost"}}, [], tmp_path)


def test_texts_are_written_per_distribution_and_supplied_texts_fill_gaps(tmp_path: Path) -> None:
    rows = [_row("Pillow", text="HPND text", licence="MIT-CMU"), _row("spandrel", text="UNKNOWN")]
    written = licences.write_distribution_licences(
        {"Pillow": {"PIL"}, "spandrel": {"spandrel"}},
        rows,
        tmp_path,
        fallback=lambda name: [("spandrel-MIT.txt", "Copyright (c) 2024 Joey Ballentine")],
    )
    by_name = {d.name: d for d in written}
    assert (tmp_path / by_name["Pillow"].files[0]).read_text() == "HPND text"
    assert "Joey Ballentine" in (tmp_path / by_name["spandrel"].files[0]).read_text()
    assert by_name["Pillow"].top_levels == ("PIL",)
    # spandrel's wheel ships no licence file: the text we supply is the real fallback.
    assert licences.SUPPLIED["spandrel"]
    for rel in licences.SUPPLIED["spandrel"]:
        assert (licences.LICENSE_DIR / rel).is_file()


def test_system_libraries_need_a_debian_copyright(tmp_path: Path) -> None:
    binaries = [("libfoo.so.1", "/nonexistent/lib/libfoo.so.1")]
    if not Path("/usr/bin/dpkg").exists():
        pytest.skip("not a Debian host")
    with pytest.raises(licences.MissingLicence, match="libfoo"):
        licences.write_system_copyrights(binaries, tmp_path, owner=lambda path: None)
    written = licences.write_system_copyrights(binaries, tmp_path, owner=lambda path: "libc6")
    assert written[0].package == "libc6"
    assert (tmp_path / written[0].copyright_file).read_text().strip()


def test_debian_copyright_names_every_component() -> None:
    index = licences.LicenceIndex(
        distributions=[
            licences.DistributionLicence(
                "torch", "2.14.1", "BSD-3-Clause", ("t/LICENSE",), ("torch",)
            ),
            licences.DistributionLicence(
                "spandrel", "0.4.2", "MIT License", ("s/M",), ("spandrel",)
            ),
        ],
        python="Python-3.11.7-LICENSE.txt",
        python_version="3.11.7",
        system_libraries=[
            licences.SystemLibrary("libreadline.so.8", "/lib/libreadline.so.8", "libreadline8", "x")
        ],
    )
    text = licences.debian_copyright(index, "opt/vsr-desktop")
    assert text.startswith("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/")
    assert "Files: opt/vsr-desktop/_internal/spandrel/*\n" in text
    assert "License: Expat\nComment: spandrel 0.4.2" in text
    assert "Files: opt/vsr-desktop/_internal/libreadline.so.8" in text
    assert "Python 3.11.7" in text
    # Every short name used in a stanza has its own License paragraph.
    used = {line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("License: ")}
    paragraphs = text.split("\n\n")
    standalone = {
        p.split("\n")[0][len("License: ") :] for p in paragraphs if p.startswith("License:")
    }
    for name in used:
        for part in name.replace(" or ", " and ").split(" and "):
            assert part in standalone, part
    assert licences.LicenceIndex.from_json(index.to_json()) == index


@pytest.mark.slow
def test_pip_licenses_finds_a_fake_distribution_without_a_licence(tmp_path: Path) -> None:
    """End to end with the real tool: a venv holding one dist-info with no licence file."""
    pytest.importorskip("piplicenses", reason="pip install pip-licenses (the packaging extra)")
    env = tmp_path / "env"
    venv.create(env, with_pip=False)
    python = env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    info = Path(site) / "fakedist-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakedist\nVersion: 0.1\n")
    (info / "RECORD").write_text("fakedist-0.1.dist-info/METADATA,,\n")
    rows = licences.pip_licenses_rows(str(python))
    assert [r["Name"] for r in rows] == ["fakedist"]
    with pytest.raises(licences.MissingLicence, match=r"fakedist 0\.1"):
        licences.write_distribution_licences({"fakedist": {"fakedist"}}, rows, tmp_path / "out")
