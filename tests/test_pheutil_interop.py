"""Keys move freely between hefed and python-paillier's ``pheutil`` command line tool."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import hefed
from hefed.errors import InsecureKeyError

TARGET = "co2_t"


def _find_pheutil() -> str | None:
    beside = Path(sys.executable).with_name("pheutil")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("pheutil")


PHEUTIL = _find_pheutil()
pytestmark = pytest.mark.skipif(PHEUTIL is None, reason="pheutil (phe[cli]) not installed")


def pheutil(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([PHEUTIL, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


@pytest.fixture(scope="module")
def pheutil_keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pheutil")
    pheutil("genpkey", "--keysize", 1024, "priv.json", cwd=folder)
    pheutil("extract", "priv.json", "pub.json", cwd=folder)
    return folder / "priv.json", folder / "pub.json"


def test_pheutil_keys_load_in_hefed_and_decrypt_hefed_bundles(pheutil_keys, _consortium_master):
    priv_path, pub_path = pheutil_keys
    public_key = hefed.load_public_key(pub_path, insecure_test_key=True)  # made by another process
    assert public_key.n.bit_length() == 1024
    # pheutil writes the private key with the default umask: hefed refuses it until chmod 600
    if stat.S_IMODE(priv_path.stat().st_mode) & 0o077:
        with pytest.raises(InsecureKeyError):
            hefed.load_private_key(priv_path)
    priv_path.chmod(0o600)
    private_key = hefed.load_private_key(priv_path)
    assert private_key.public_key.n == public_key.n
    bundles = [hefed.encrypt_statistics(frame, TARGET, public_key, factory_id=name)
               for name, frame in _consortium_master.items()]
    stats = hefed.decrypt_statistics(hefed.aggregate(bundles), private_key, allow_unsigned=True)
    pooled = pd.concat(_consortium_master.values(), ignore_index=True)
    assert stats.gram == hefed.compute_statistics(pooled, TARGET).gram


def test_hefed_keys_work_in_pheutil(tmp_path, keypair):
    public_key, private_key = keypair
    hefed.save_public_key(public_key, tmp_path / "pub.json")
    hefed.save_private_key(private_key, tmp_path / "priv.json")
    pheutil("encrypt", "pub.json", "5.5", "--output", "c.json", cwd=tmp_path)
    ciphertext = json.loads((tmp_path / "c.json").read_text())
    assert set(ciphertext) == {"v", "e"}
    result = pheutil("decrypt", "priv.json", "c.json", cwd=tmp_path)
    assert float(result.stdout.strip()) == 5.5
    # a negative value and the homomorphic sum, for good measure
    pheutil("encrypt", "--output", "d.json", "pub.json", "--", "-2.25", cwd=tmp_path)
    pheutil("addenc", "pub.json", "c.json", "d.json", "--output", "s.json", cwd=tmp_path)
    assert float(pheutil("decrypt", "priv.json", "s.json", cwd=tmp_path).stdout.strip()) == 3.25


def test_pheutil_extract_of_a_hefed_private_key_matches_hefed_public_key(tmp_path, keypair):
    hefed.save_private_key(keypair[1], tmp_path / "priv.json")
    pheutil("extract", "priv.json", "pub.json", cwd=tmp_path)
    assert hefed.load_public_key(tmp_path / "pub.json").n == keypair[0].n
    assert json.loads((tmp_path / "pub.json").read_text())["n"] == json.loads((tmp_path / "priv.json").read_text())[
        "pub"
    ]["n"]
