"""Signed links: how annotators' browsers fetch an image, or the model's view of it, from this
service without an API token.

A link is ``<public url>/labelstudio/<kind>/<image id>?exp=<unix time>&sig=<hmac>``, ``kind``
``images`` or ``overlays``. The signature is an HMAC-SHA256 (128 bits kept) of kind, image id
and expiry under the image's project's link key: it opens that one picture of that one image
until ``exp``. Each project's key is a file, ``<data dir>/labelstudio/link_keys/<project id>``,
made on first use and shared by every process on the data directory; rotating it revokes
every link of the project at once (:func:`rotate_key`).

Links live inside Label Studio tasks, which annotators may open days or weeks after a push,
so they last ``signed_link_ttl_s`` (30 days by default: a round's batch is usually answered
within days, and a stale unanswered task gets a fresh link whenever its image is pushed
again or the project's links are refreshed).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from backend.settings import Settings

KINDS = ("images", "overlays")

#: a signed link inside task data (an ``<img src>`` in the overlay's HTML has ``&amp;``)
LINK = re.compile(
    r"(?P<base>https?://[^\s\"'<>?#]*?)/labelstudio/(?P<kind>images|overlays)/(?P<id>\d+)"
    r"\?(?:exp=\d+(?P<amp>&amp;|&))?sig=[0-9a-f]+"
)


def secret_file(path: Path) -> str:
    """The secret stored in ``path``, made (random, owner-readable) when there is none yet;
    the first of several concurrent writers wins and the others read its secret."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        tmp.write_text(secrets.token_urlsafe(32))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text().strip()


def key_path(settings: Settings, project_id: int) -> Path:
    return settings.data_dir / "labelstudio" / "link_keys" / str(int(project_id))


def rotate_key(settings: Settings, project_id: int) -> None:
    """Give the project a new link key: every link signed before stops working."""
    path = key_path(settings, project_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
    tmp.write_text(secrets.token_urlsafe(32))
    tmp.chmod(0o600)
    os.replace(tmp, path)


def signature(settings: Settings, project_id: int, kind: str, image_id: int, expires: int) -> str:
    key = secret_file(key_path(settings, project_id)).encode()
    return hmac.new(key, f"{kind}:{image_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def signed_link(settings: Settings, project_id: int, kind: str, image_id: int, *, now: float | None = None) -> str:
    """A link to ``kind`` of image ``image_id`` valid for ``settings.signed_link_ttl_s`` from ``now``."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    expires = int((time.time() if now is None else now) + settings.signed_link_ttl_s)
    sig = signature(settings, project_id, kind, image_id, expires)
    return f"{settings.public_url.rstrip('/')}/labelstudio/{kind}/{image_id}?exp={expires}&sig={sig}"


def refusal(
    settings: Settings, project_id: int, kind: str, image_id: int, expires: int, sig: str, *, now: float | None = None
) -> str | None:
    """Why a link does not open (None: it does): expired, or a signature that is wrong or was revoked."""
    if expires < (time.time() if now is None else now):
        return "this link has expired: push the image again or refresh the project's links"
    if not hmac.compare_digest(sig.encode(), signature(settings, project_id, kind, image_id, expires).encode()):
        return "wrong or revoked link signature"
    return None


def resign(
    text: str, settings: Settings, project_id: int, owns: Callable[[int], bool], *, now: float | None = None
) -> str:
    """``text`` with every signed link to an image ``owns`` accepts replaced by a fresh one
    (this service's current public URL, a new expiry, the project's current key)."""

    def fresh(m: re.Match) -> str:
        image_id = int(m.group("id"))
        if not owns(image_id):
            return m.group(0)
        link = signed_link(settings, project_id, m.group("kind"), image_id, now=now)
        return link.replace("&", "&amp;") if m.group("amp") == "&amp;" else link

    return LINK.sub(fresh, text)
