"""Swagger UI (/docs) and ReDoc (/redoc) work offline: every script, style and icon they load is
served by the API itself, and nothing in the pages points at another host."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}


class _Links(HTMLParser):
    """The URLs a page makes the browser load: <script src>, <link href>, ReDoc's spec-url."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.links: list[str] = []
        self.specs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "script" and "src" in values:
            self.scripts.append(values["src"])
        elif tag == "link" and "href" in values:
            self.links.append(values["href"])
        elif tag == "redoc" and "spec-url" in values:
            self.specs.append(values["spec-url"])


def _page(client: TestClient, path: str) -> tuple[str, _Links]:
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    links = _Links()
    links.feed(r.text)
    return r.text, links


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_the_docs_pages_name_no_other_host(client: TestClient, path: str) -> None:
    page, links = _page(client, path)
    assert "http" not in page.lower()
    assert "cdn" not in page.lower()
    for url in [*links.scripts, *links.links, *links.specs]:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), url
        assert url.startswith("/"), url


@pytest.mark.parametrize(
    ("path", "assets"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
        ("/redoc", {"redoc.standalone.js", "favicon.png"}),
    ],
)
def test_every_asset_the_docs_pages_load_is_served_here(
    client: TestClient, path: str, assets: set[str]
) -> None:
    _, links = _page(client, path)
    urls = [*links.scripts, *links.links]
    assert {url.rsplit("/", 1)[-1] for url in urls} == assets
    for url in urls:
        r = client.get(url)
        assert r.status_code == 200, url
        assert len(r.content) > 1000, url
        suffix = url[url.rindex(".") :]
        assert r.headers["content-type"].split(";")[0] in CONTENT_TYPES[suffix], url


def test_swagger_ui_and_redoc_read_our_openapi_document(client: TestClient) -> None:
    swagger, _ = _page(client, "/docs")
    _, redoc = _page(client, "/redoc")
    assert re.findall(r"url: '([^']*)'", swagger) == ["/openapi.json"]
    assert redoc.specs == ["/openapi.json"]
    assert client.get("/openapi.json").status_code == 200


def test_the_bundles_are_the_real_ones(client: TestClient) -> None:
    # Non-empty is not enough: a stub or an error page would also be bytes.
    assert b"SwaggerUIBundle" in client.get("/docs/static/swagger-ui-bundle.js").content
    assert b".swagger-ui" in client.get("/docs/static/swagger-ui.css").content
    assert b"Redoc" in client.get("/docs/static/redoc.standalone.js").content
