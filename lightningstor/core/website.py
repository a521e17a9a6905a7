"""Static website hosting: what a website request for a key means.

The decisions of AWS's website endpoint, free of any protocol: which key an
index document turns a "folder" into, which routing rule applies before and
after the object lookup, and where a redirect sends the browser.  The S3
layer (s3/handlers/website.py) reads objects and writes the answers.

Sources: AWS S3 user guide, "Configuring an index document", "Configuring a
custom error document", "(Optional) Configuring a webpage redirect" and the
``RoutingRules`` reference of PutBucketWebsite.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from lightningstor.core.types import WebsiteConfiguration, WebsiteRedirect, WebsiteRoutingRule

DEFAULT_REDIRECT_CODE = 301


@dataclass(frozen=True)
class Redirect:
    """A redirect to answer: its status and ``Location``."""

    status: int
    location: str


def index_key(key: str, suffix: str) -> str:
    """The key a request reads: the root (``""``) and any key ending in '/'
    name a folder, whose index document is ``key + suffix``."""
    if key == "" or key.endswith("/"):
        return key + suffix
    return key


def folder_index_key(key: str, suffix: str) -> str | None:
    """The index document of the folder ``key`` might mean when the object
    ``key`` itself does not exist (``photos`` -> ``photos/index.html``);
    None when ``key`` already names a folder."""
    if key == "" or key.endswith("/"):
        return None
    return f"{key}/{suffix}"


def rule_before_lookup(config: WebsiteConfiguration, key: str) -> WebsiteRoutingRule | None:
    """The first routing rule that applies before the object is looked up:
    one without an error-code condition whose key prefix (if any) matches."""
    for rule in config.routing_rules:
        if rule.http_error_code_returned_equals is None and _prefix_matches(rule, key):
            return rule
    return None


def rule_after_error(config: WebsiteConfiguration, key: str, status: int) -> WebsiteRoutingRule | None:
    """The first routing rule whose error-code condition is ``status`` (and
    whose key prefix, if it names one too, matches): it replaces the error."""
    for rule in config.routing_rules:
        code = rule.http_error_code_returned_equals
        if code is not None and code == str(status) and _prefix_matches(rule, key):
            return rule
    return None


def _prefix_matches(rule: WebsiteRoutingRule, key: str) -> bool:
    return rule.key_prefix_equals is None or key.startswith(rule.key_prefix_equals)


def rule_redirect(rule: WebsiteRoutingRule, key: str, *, scheme: str, host: str) -> Redirect:
    """Where a routing rule sends a request for ``key``: the rule's protocol
    and host name, or the request's; ``ReplaceKeyWith`` replaces the whole
    key, ``ReplaceKeyPrefixWith`` the matched prefix (the whole key is
    kept behind it when the rule names no prefix)."""
    r = rule.redirect
    if r.replace_key_with is not None:
        new_key = r.replace_key_with
    elif r.replace_key_prefix_with is not None:
        matched = rule.key_prefix_equals or ""
        new_key = r.replace_key_prefix_with + key[len(matched):]
    else:
        new_key = key
    return Redirect(_code(r), _location(r.protocol or scheme, r.host_name or host, new_key))


def redirect_all(target: WebsiteRedirect, key: str, *, scheme: str) -> Redirect:
    """``RedirectAllRequestsTo``: every request goes, with its key, to the
    other host (always 301)."""
    return Redirect(DEFAULT_REDIRECT_CODE, _location(target.protocol or scheme, target.host_name or "", key))


def _code(r: WebsiteRedirect) -> int:
    return int(r.http_redirect_code) if r.http_redirect_code else DEFAULT_REDIRECT_CODE


def _location(scheme: str, host: str, key: str) -> str:
    """An absolute URL; the key is percent-encoded as a path ('/' kept)."""
    return f"{scheme}://{host}/{quote(key, safe='/~')}"


def folder_redirect(key: str) -> Redirect:
    """A key without its trailing '/' whose folder has an index document:
    302 to the folder (relative to the request's own host, as AWS does)."""
    return Redirect(302, "/" + quote(key, safe="/~") + "/")


# The system header an object's website redirect is stored under.  It is
# the object's own: a copy never takes it from its source (AWS).
REDIRECT_HEADER = "x-amz-website-redirect-location"


def simple_redirect_location(location: str) -> bool:
    """Whether an object's ``x-amz-website-redirect-location`` is one AWS
    accepts: a path on this site (``/...``) or an absolute http(s) URL."""
    return location.startswith("/") or location.startswith(("http://", "https://"))
