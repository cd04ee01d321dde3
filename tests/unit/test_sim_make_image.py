"""`cpe-sim make-image` writes what the simulated CPEs' image check accepts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from cpe_simulator.cli import main
from cpe_simulator.firmware import BadImage, verify_image


def test_the_image_it_writes_installs_its_version(tmp_path: Path) -> None:
    out = tmp_path / "fw-2.0.bin"
    result = CliRunner().invoke(
        main, ["make-image", "--version", "2.0.0", "-o", str(out), "--size", "1000"]
    )
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert verify_image(data) == "2.0.0"
    assert len(data) - (data.index(b"\n") + 1) == 1000  # --size is the payload
    assert hashlib.sha256(data).hexdigest() in result.output
    # one flipped payload byte is what corrupt-download does: the check catches it
    with pytest.raises(BadImage, match="SHA-256"):
        verify_image(data[:-1] + bytes([data[-1] ^ 1]))


def test_a_version_with_a_blank_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "fw.bin"
    result = CliRunner().invoke(main, ["make-image", "--version", "2 0", "-o", str(out)])
    assert result.exit_code == 2
    assert "--version" in result.output
    assert not out.exists()


def test_simulating_still_needs_the_acs_url() -> None:
    result = CliRunner().invoke(main, ["--devices", "1"])
    assert result.exit_code == 2
    assert "--acs-url" in result.output
