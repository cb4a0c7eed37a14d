"""The one SSRF-safe HTTP client for every outbound URL (media, completions images, webhooks).

Each hop: http/https only, no credentials in the URL, every resolved address checked, the
connection pinned to the checked address (Host header and TLS SNI keep the name), redirects
followed by hand and re-checked, proxies from the environment ignored, bytes and time capped.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import httpx

from scenecap.core.errors import (
    InvalidMediaUrl,
    MediaTooLarge,
    MediaUnreachable,
    UnsupportedUrlScheme,
    UrlNotAllowed,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Deprecated ways to write an IPv4 address in IPv6 (RFC 4291 "compatible", RFC 2765
# "translated"): nothing public is reached through them, and ::127.0.0.1 is loopback.
_IPV4_IN_IPV6 = (ipaddress.ip_network("::/96"), ipaddress.ip_network("::ffff:0:0:0/96"))


@dataclass(frozen=True)
class CheckedUrl:
    """A URL whose host resolved only to allowed addresses, pinned to one of them."""

    url: httpx.URL
    address: IPAddress

    def pinned(self) -> httpx.URL:
        """Return the URL with its host replaced by the checked address."""
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return self.url.copy_with(host=host)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address hidden in an IPv6 form (mapped, NAT64, 6to4), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_public_address(address: IPAddress) -> bool:
    """Tell whether an address is globally routable unicast, looking through IPv6 wrappers."""
    if isinstance(address, ipaddress.IPv6Address) and any(address in n for n in _IPV4_IN_IPV6):
        return False
    inner = embedded_ipv4(address)
    if inner is not None and not is_public_address(inner):
        return False
    return address.is_global and not address.is_multicast


class UrlPolicy:
    """Decide which URLs may be fetched; resolves names and checks every address."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private

    def check(self, raw_url: str) -> CheckedUrl:
        """Parse, resolve and check a URL, or raise the matching UrlRejected error."""
        try:
            url = httpx.URL(raw_url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise InvalidMediaUrl(f"not a valid URL: {exc}") from exc
        if url.scheme not in ("http", "https"):
            raise UnsupportedUrlScheme(
                f"URL scheme {url.scheme or '(none)'!r} is not allowed; use http or https",
                {"scheme": url.scheme},
            )
        if not url.host:
            raise InvalidMediaUrl("URL has no host")
        if url.userinfo:
            raise UrlNotAllowed("credentials in URLs are not accepted")
        addresses = self._resolve(url.host, url.port or (443 if url.scheme == "https" else 80))
        refused = [a for a in addresses if not self._allowed(a)]
        if refused:
            raise UrlNotAllowed(
                f"host {url.host!r} resolves to a non-public address",
                {"host": url.host, "address": str(refused[0])},
            )
        return CheckedUrl(url=url, address=addresses[0])

    def _allowed(self, address: IPAddress) -> bool:
        return self.allow_private or is_public_address(address)

    @staticmethod
    def _resolve(host: str, port: int) -> list[IPAddress]:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise MediaUnreachable(f"cannot resolve host {host!r}", {"host": host}) from exc
        # Strip any IPv6 zone id ("fe80::1%eth0") before parsing.
        found = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
        if not found:
            raise MediaUnreachable(f"host {host!r} has no address", {"host": host})
        return sorted(found, key=lambda a: (a.version, int(a)))


@dataclass(frozen=True)
class Download:
    """What was written by a download, and what the server said it was."""

    size: int
    content_type: str | None
    sha256: str  # of the bytes written, taken as they streamed by


@dataclass(frozen=True)
class Reply:
    """What a receiver answered (its body is read, capped, and dropped)."""

    status_code: int
    headers: httpx.Headers


class SafeHttpClient:
    """Synchronous SSRF-safe client; one instance may serve many requests."""

    def __init__(
        self,
        policy: UrlPolicy,
        *,
        connect_timeout: float = 10.0,
        max_redirects: int = 5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.policy = policy
        self.max_redirects = max_redirects
        self._client = httpx.Client(
            timeout=httpx.Timeout(30.0, connect=connect_timeout),
            follow_redirects=False,
            trust_env=False,  # HTTP_PROXY must not route around the address checks.
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SafeHttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def stream(
        self, url: str, *, deadline: float, headers: dict[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        """Open a GET on url, following checked redirects; yields the final streamed response."""
        current = url
        for _hop in range(self.max_redirects + 1):
            checked = self.policy.check(current)
            request = pinned_request(self._client, "GET", checked, deadline, headers=headers or {})
            try:
                response = self._client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise _unreachable(checked, exc) from exc
            try:
                redirect = _redirect_of(checked, response)
                if redirect is None:
                    yield response
                    return
                current = redirect
            finally:
                response.close()
        raise MediaUnreachable(f"more than {self.max_redirects} redirects")

    def post(
        self,
        url: str,
        *,
        content: bytes,
        headers: dict[str, str],
        timeout: float,
        max_response_bytes: int = 64 * 1024,
    ) -> Reply:
        """POST once to a checked, pinned address: redirects are not followed, the whole
        exchange has a deadline, and at most max_response_bytes of the answer are read (a
        slow-drip receiver is cut off)."""
        deadline = time.monotonic() + timeout
        checked = self.policy.check(url)
        request = pinned_request(
            self._client, "POST", checked, deadline, headers=headers, content=content
        )
        try:
            response = self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise MediaUnreachable(f"{type(exc).__name__} reaching {checked.url.host}") from exc
        try:
            read = 0
            for chunk in _iter_with_deadline(response, deadline):
                read += len(chunk)
                if read >= max_response_bytes:
                    break
            return Reply(response.status_code, response.headers)
        finally:
            response.close()

    def download(self, url: str, dest: IO[bytes], *, max_bytes: int, timeout: float) -> Download:
        """Stream url into dest, enforcing max_bytes whatever Content-Length claims."""
        deadline = time.monotonic() + timeout
        with self.stream(url, deadline=deadline) as response:
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise MediaTooLarge(
                    f"media is {int(declared)} bytes; the limit is {max_bytes}",
                    {"limit": max_bytes},
                )
            size, digest = 0, hashlib.sha256()
            for chunk in _iter_with_deadline(response, deadline):
                size += len(chunk)
                if size > max_bytes:
                    raise MediaTooLarge(
                        f"media exceeds the limit of {max_bytes} bytes", {"limit": max_bytes}
                    )
                dest.write(chunk)
                digest.update(chunk)
            dest.flush()
            content_type = response.headers.get("content-type")
            return Download(size, content_type, digest.hexdigest())


class AsyncSafeHttpClient:
    """The same policy on the event loop, for the API's submit-time look at a media URL: a
    slow or silent server holds a coroutine, never a thread."""

    def __init__(
        self,
        policy: UrlPolicy,
        *,
        connect_timeout: float = 10.0,
        max_redirects: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.policy = policy
        self.max_redirects = max_redirects
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=connect_timeout),
            follow_redirects=False,
            trust_env=False,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def peek(self, url: str, *, nbytes: int = 4096, timeout: float = 5.0) -> bytes:
        """Up to the first nbytes of url's body (for sniffing its type), within `timeout`
        seconds for everything: name lookups, redirects, connecting, reading."""
        deadline = time.monotonic() + timeout
        try:
            async with asyncio.timeout(timeout):
                return await self._peek(url, nbytes, deadline)
        except TimeoutError:
            raise MediaUnreachable(
                f"the media URL did not answer within {timeout:g} s", {"timeout": timeout}
            ) from None

    async def _peek(self, url: str, nbytes: int, deadline: float) -> bytes:
        current = url
        for _hop in range(self.max_redirects + 1):
            # The lookup blocks: on a thread of the loop's own pool, never the API's.
            checked = await asyncio.to_thread(self.policy.check, current)
            request = pinned_request(self._client, "GET", checked, deadline, headers={})
            try:
                response = await self._client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise _unreachable(checked, exc) from exc
            try:
                redirect = _redirect_of(checked, response)
                if redirect is None:
                    head = bytearray()
                    async for chunk in response.aiter_raw():
                        head += chunk
                        if len(head) >= nbytes:
                            break
                    return bytes(head[:nbytes])
                current = redirect
            except httpx.HTTPError as exc:
                raise MediaUnreachable(f"download failed: {type(exc).__name__}") from exc
            finally:
                await response.aclose()
        raise MediaUnreachable(f"more than {self.max_redirects} redirects")


def pinned_request(
    client: httpx.Client | httpx.AsyncClient,
    method: str,
    checked: CheckedUrl,
    deadline: float,
    *,
    headers: dict[str, str],
    content: bytes | None = None,
) -> httpx.Request:
    """A request to the checked address; Host and TLS SNI keep the original name."""
    return client.build_request(
        method,
        checked.pinned(),
        content=content,
        headers={**headers, "Host": checked.url.netloc.decode("ascii")},
        extensions={"sni_hostname": checked.url.host, "timeout": _remaining_timeout(deadline)},
    )


def _redirect_of(checked: CheckedUrl, response: httpx.Response) -> str | None:
    """Where a redirect points (to be checked again), None for a success; else refused."""
    if response.is_redirect and "location" in response.headers:
        return str(checked.url.join(response.headers["location"]))
    if not response.is_success:
        raise MediaUnreachable(
            f"media URL answered HTTP {response.status_code}",
            {"status_code": response.status_code},
        )
    return None


def _unreachable(checked: CheckedUrl, exc: Exception) -> MediaUnreachable:
    return MediaUnreachable(
        f"could not fetch {checked.url.host}: {type(exc).__name__}", {"host": checked.url.host}
    )


def _remaining_timeout(deadline: float) -> dict[str, float]:
    left = max(0.1, deadline - time.monotonic())
    return {"connect": min(left, 10.0), "read": left, "write": left, "pool": left}


def _iter_with_deadline(response: httpx.Response, deadline: float) -> Iterator[bytes]:
    # No chunk size: httpx would buffer up to it, and a server dripping bytes would then
    # never reach the deadline check below.
    try:
        for chunk in response.iter_raw():
            if time.monotonic() > deadline:
                raise MediaUnreachable("the media server was too slow: fetch deadline passed")
            yield chunk
    except httpx.HTTPError as exc:
        raise MediaUnreachable(f"download failed: {type(exc).__name__}") from exc
