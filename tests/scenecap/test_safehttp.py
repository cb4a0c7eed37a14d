"""The SSRF-safe client: address policy, pinning, redirects and byte caps."""

from __future__ import annotations

import asyncio
import io
import ipaddress
from collections.abc import Callable

import httpx
import pytest

from scenecap.core.errors import (
    MediaTooLarge,
    MediaUnreachable,
    UnsupportedUrlScheme,
    UrlNotAllowed,
    UrlRejected,
)
from scenecap.core.safehttp import (
    AsyncSafeHttpClient,
    SafeHttpClient,
    UrlPolicy,
    is_public_address,
)

BLOCKED = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "100.100.100.200",
    "0.0.0.0",
    "224.0.0.1",
    "::1",
    "fc00::1",
    "fe80::1",
    "::ffff:127.0.0.1",
    "64:ff9b::a00:1",
    "2002:7f00:1::",
    "::",
    "::127.0.0.1",
    "::8.8.8.8",
    "::ffff:0:127.0.0.1",
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", BLOCKED)
def test_non_public_addresses_are_blocked(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://0x7f000001/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost/",
        "http://[64:ff9b::7f00:1]/",
    ],
)
def test_policy_refuses_private_spellings(url: str) -> None:
    # httpx itself rejects some spellings (octal) as invalid URLs; either way it is refused.
    with pytest.raises(UrlRejected):
        UrlPolicy(allow_private=False).check(url)


def test_policy_refuses_other_schemes() -> None:
    with pytest.raises(UnsupportedUrlScheme):
        UrlPolicy(allow_private=False).check("file:///etc/passwd")


def public_policy() -> UrlPolicy:
    """A policy that resolves every name to one public address, so MockTransport can answer."""

    class FixedResolution(UrlPolicy):
        @staticmethod
        def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
            if host.replace(".", "").isdigit():
                return [ipaddress.ip_address(host)]
            return [ipaddress.ip_address("93.184.216.34")]

    return FixedResolution(allow_private=False)


def peek(
    policy: UrlPolicy,
    url: str,
    handler: Callable[[httpx.Request], httpx.Response] | None = None,
    *,
    nbytes: int = 4096,
    max_redirects: int = 5,
) -> bytes:
    """The submit-time look at a URL (the async client), answered by `handler` if given."""
    transport = httpx.MockTransport(handler) if handler is not None else None

    async def look() -> bytes:
        client = AsyncSafeHttpClient(policy, max_redirects=max_redirects, transport=transport)
        try:
            return await client.peek(url, nbytes=nbytes)
        finally:
            await client.aclose()

    return asyncio.run(look())


class TestSafeClient:
    def test_connection_is_pinned_to_the_checked_address_and_keeps_host(self) -> None:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, stream=httpx.ByteStream(b"\xff\xd8\xff rest"))

        found = peek(public_policy(), "https://media.example/v.jpg", handler, nbytes=3)
        assert found == b"\xff\xd8\xff"
        assert seen[0].url.host == "93.184.216.34"
        assert seen[0].headers["host"] == "media.example"
        assert seen[0].extensions["sni_hostname"] == "media.example"

    def test_redirect_to_a_private_address_is_refused(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(302, headers={"Location": "http://127.0.0.1/secret"})

        with pytest.raises(UrlNotAllowed):
            peek(public_policy(), "http://media.example/v.mp4", handler)

    def test_redirect_loops_are_bounded(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(302, headers={"Location": "/again"})

        with pytest.raises(MediaUnreachable, match="redirects"):
            peek(public_policy(), "http://media.example/v.mp4", handler, max_redirects=3)

    @pytest.mark.parametrize("declared", [None, "10"], ids=["no-length", "lying-length"])
    def test_byte_cap_holds_whatever_content_length_says(self, declared: str | None) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            headers = {"Content-Length": declared} if declared else {}
            return httpx.Response(200, headers=headers, stream=httpx.ByteStream(b"x" * 5000))

        with (
            SafeHttpClient(public_policy(), transport=httpx.MockTransport(handler)) as client,
            pytest.raises(MediaTooLarge),
        ):
            client.download("http://media.example/v.mp4", io.BytesIO(), max_bytes=1000, timeout=5)

    def test_declared_oversize_is_refused_before_reading(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, headers={"Content-Length": "999999999"}, content=b"")

        with (
            SafeHttpClient(public_policy(), transport=httpx.MockTransport(handler)) as client,
            pytest.raises(MediaTooLarge),
        ):
            client.download("http://media.example/v.mp4", io.BytesIO(), max_bytes=1000, timeout=5)


class TestBypasses:
    def test_dns_rebinding_cannot_move_the_connection(self) -> None:
        """The name is resolved once; the connection goes to that checked address."""
        answers = iter(["93.184.216.34", "127.0.0.1", "127.0.0.1"])

        class Rebinding(UrlPolicy):
            @staticmethod
            def _resolve(
                host: str, port: int
            ) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
                return [ipaddress.ip_address(next(answers))]

        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, stream=httpx.ByteStream(b"\xff\xd8\xff"))

        peek(Rebinding(allow_private=False), "http://rebind.example/v.jpg", handler)
        assert [r.url.host for r in seen] == ["93.184.216.34"]

    def test_proxy_settings_in_the_environment_are_ignored(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import http.server
        import threading

        def recorder(hits: list[str]) -> http.server.ThreadingHTTPServer:
            class Handler(http.server.BaseHTTPRequestHandler):
                def do_GET(self) -> None:
                    hits.append(self.path)
                    self.send_response(200)
                    self.send_header("Content-Length", "3")
                    self.end_headers()
                    self.wfile.write(b"\xff\xd8\xff")

                def log_message(self, format: str, *args: object) -> None:
                    return None

            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            return server

        proxied: list[str] = []
        direct: list[str] = []
        proxy, target = recorder(proxied), recorder(direct)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.server_address[1]}")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        try:
            # The production client (no transport injected), on loopback only.
            url = f"http://127.0.0.1:{target.server_address[1]}/v.jpg"
            peek(UrlPolicy(allow_private=True), url, nbytes=3)
            assert proxied == [], "nothing may go through the proxy"
            assert direct == ["/v.jpg"]
        finally:
            for server in (proxy, target):
                server.shutdown()
                server.server_close()
