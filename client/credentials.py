"""C2PA content credentials on saved videos: the operator's signing key, signing and reading.

The key and its certificate chain are made on first use on the operator's machine (ES256: a
self-signed root and a leaf it signs, as C2PA refuses a self-signed signing certificate) and
kept under the user's config dir (`$XDG_CONFIG_HOME/swaptron/c2pa`, files 0600, folder 0700),
or given by path (one's own certificate). They are never in the repository and never reach the
server. The manifest states that faces were swapped by swaptron, with the identity and the time.
A manifest does not survive re-encoding; the invisible mark in the faces does.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

GENERATOR = "swaptron"
KEY_FILE, CHAIN_FILE = "signing-key.pem", "signing-chain.pem"
VALID_DAYS = 3650
ROOT_NAME = "swaptron local root"


class CredentialsError(RuntimeError):
    """The key cannot be made or used, or a file cannot be signed; the message says why."""


@dataclass(frozen=True)
class SigningFiles:
    """The PEM private key and the PEM certificate chain (leaf first) that sign manifests."""

    key: Path
    chain: Path


def config_dir() -> Path:
    """Where the operator's key lives: $XDG_CONFIG_HOME/swaptron/c2pa (~/.config by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "swaptron" / "c2pa"


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (created 0600, never wider)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)


def name_of(subject: str) -> x509.Name:
    """A certificate name: common name and organisation."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, GENERATOR)])


def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
                signing_key: ec.EllipticCurvePrivateKey, authority: bool) -> x509.Certificate:
    """One certificate: a CA (root) or a leaf for document signing (C2PA's rules)."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name_of(subject))
               .issuer_name(name_of(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
               .add_extension(x509.BasicConstraints(ca=authority, path_length=None), True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   signing_key.public_key()), False))
    if authority:
        builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True,
                                                      True, False, False), True)
    else:
        builder = (builder.add_extension(x509.KeyUsage(True, False, False, False, False, False,
                                                       False, False, False), True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                                  False))
    return builder.sign(signing_key, hashes.SHA256())


def create_signing_files(folder: Path) -> SigningFiles:
    """Make a new ES256 key and a two-certificate chain in `folder` (0700; files 0600)."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    root = certificate(ROOT_NAME, root_key, ROOT_NAME, root_key, True)
    leaf = certificate("swaptron operator", leaf_key, ROOT_NAME, root_key, False)
    files = SigningFiles(folder / KEY_FILE, folder / CHAIN_FILE)
    write_private(files.key, leaf_key.private_bytes(serialization.Encoding.PEM,
                                                    serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    write_private(files.chain, b"".join(item.public_bytes(serialization.Encoding.PEM)
                                        for item in (leaf, root)))
    return files


def signing_files(key: Path | None = None, chain: Path | None = None,
                  folder: Path | None = None) -> SigningFiles:
    """The given key and chain, else the config dir's (made on first use)."""
    if (key is None) != (chain is None):
        raise CredentialsError("give both the key and the certificate chain, or neither")
    if key is not None and chain is not None:
        return SigningFiles(key, chain)
    folder = folder or config_dir()
    files = SigningFiles(folder / KEY_FILE, folder / CHAIN_FILE)
    if files.key.is_file() and files.chain.is_file():
        return files
    return create_signing_files(folder)


def manifest(identity: str, when: datetime.datetime, title: str) -> dict[str, object]:
    """The C2PA manifest definition: a video made by swaptron, faces swapped to `identity`."""
    return {
        "claim_generator_info": [{"name": GENERATOR}],
        "title": title,
        "assertions": [{
            "label": "c2pa.actions",
            "data": {"actions": [{
                "action": "c2pa.created",
                "softwareAgent": {"name": GENERATOR},
                "when": when.isoformat(),
                "digitalSourceType":
                    "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia",
                "description": f"faces swapped by {GENERATOR} to the identity {identity!r}",
                "parameters": {"identity": identity},
            }]},
        }],
    }


def sign_video(source: Path, destination: Path, identity: str,
               files: SigningFiles | None = None, when: datetime.datetime | None = None) -> Path:
    """Write `destination`: `source` with a signed manifest (the swap, identity and time)."""
    files = files or signing_files()
    when = when or datetime.datetime.now(datetime.UTC)
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, files.chain.read_bytes(),
                               files.key.read_bytes(), None)
    try:
        with (c2pa.Signer.from_info(info) as signer,
              c2pa.Builder(json.dumps(manifest(identity, when, Path(destination).name)))
              as builder):
            builder.sign_file(source, destination, signer)
    except c2pa.C2paError as error:
        raise CredentialsError(f"cannot sign {source}: {error}") from error
    return Path(destination)


def read_manifest(path: Path) -> dict[str, object] | None:
    """The file's C2PA manifest store as JSON, None when it carries none."""
    try:
        reader = c2pa.Reader.try_create(str(path))
    except c2pa.C2paError as error:
        raise CredentialsError(f"cannot read the manifest of {path}: {error}") from error
    if reader is None:
        return None
    with reader:
        return json.loads(reader.json())


def describe(store: dict[str, object]) -> str:
    """A short text of the active manifest: who made it, what was done, when, and validity."""
    active = store["manifests"][store["active_manifest"]]
    lines = [f"C2PA manifest: {active.get('title', '')} (signed by "
             f"{active.get('signature_info', {}).get('issuer', 'unknown')})"]
    for assertion in active.get("assertions", []):
        for action in assertion.get("data", {}).get("actions", []):
            lines.append(f"  {action.get('action')}: {action.get('description', '')} "
                         f"at {action.get('when', '?')}")
    state = store.get("validation_state")
    if state:
        lines.append(f"  validation: {state}")
    return "\n".join(lines)
