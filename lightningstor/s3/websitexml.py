"""The ``WebsiteConfiguration`` document of PutBucketWebsite and
GetBucketWebsite, in and out.

The structure follows AWS's schema (``IndexDocument/Suffix``,
``ErrorDocument/Key``, ``RedirectAllRequestsTo``, ``RoutingRules``); an
unknown or repeated element is ``MalformedXML``.  The rules AWS checks
beyond the schema answer 400 ``InvalidArgument`` with AWS's messages, so a
client that tests its configuration against us sees what it would see on
AWS.
"""

from __future__ import annotations

import html
from xml.etree.ElementTree import Element

from lightningstor import errors
from lightningstor.core.attributes import check_field_value
from lightningstor.core.types import WebsiteConfiguration, WebsiteRedirect, WebsiteRoutingRule
from lightningstor.s3.xmlio import S3_NS, XML_DECLARATION, escape, expect_root, leaf_text, single_children

# AWS's limit on routing rules per configuration.
MAX_ROUTING_RULES = 50
_PROTOCOLS = ("http", "https")


def _invalid(message: str, name: str, value: str) -> errors.S3Error:
    """AWS's 400 InvalidArgument for a value the schema allows but S3 refuses."""
    return errors.InvalidArgument(message, ArgumentName=name, ArgumentValue=value)


def parse_website_configuration(body: bytes) -> WebsiteConfiguration:
    """The request body -> a validated configuration (the core stores it as is)."""
    root = expect_root(body, "WebsiteConfiguration")
    parts = single_children(root, ("IndexDocument", "ErrorDocument", "RedirectAllRequestsTo", "RoutingRules"))
    if "RedirectAllRequestsTo" in parts:
        if len(parts) > 1:
            raise _invalid(
                "RedirectAllRequestsTo cannot be provided in conjunction with other Routing Rules.",
                "RedirectAllRequestsTo",
                "not null",
            )
        return WebsiteConfiguration(redirect_all=_parse_redirect_all(parts["RedirectAllRequestsTo"]))
    if "IndexDocument" not in parts:
        raise _invalid(
            "A value for IndexDocument Suffix must be provided if RedirectAllRequestsTo is empty",
            "IndexDocument",
            "null",
        )
    return WebsiteConfiguration(
        index_suffix=_parse_suffix(parts["IndexDocument"]),
        error_key=_parse_error_key(parts["ErrorDocument"]) if "ErrorDocument" in parts else None,
        routing_rules=_parse_rules(parts["RoutingRules"]) if "RoutingRules" in parts else (),
    )


def _parse_suffix(element: Element) -> str:
    """The index suffix is appended to a "folder" key, so it may neither be
    empty nor hold a '/' (AWS refuses both with the same message)."""
    suffix = _required(element, "Suffix")
    if not suffix or "/" in suffix:
        raise _invalid("The IndexDocument Suffix is not well formed", "IndexDocument", suffix)
    return suffix


def _parse_error_key(element: Element) -> str:
    """The error document is an object key: it may not be empty."""
    key = _required(element, "Key")
    if not key:
        raise _invalid("The ErrorDocument Key is not well formed", "ErrorDocument", key)
    return key


def _parse_redirect_all(element: Element) -> WebsiteRedirect:
    """``RedirectAllRequestsTo``: a host name (required) and a protocol."""
    parts = single_children(element, ("HostName", "Protocol"))
    if "HostName" not in parts or not leaf_text(parts["HostName"]).strip():
        raise errors.MalformedXML()
    protocol = _protocol(parts["Protocol"]) if "Protocol" in parts else None
    return WebsiteRedirect(host_name=_host_name(parts["HostName"]), protocol=protocol)


def _parse_rules(element: Element) -> tuple[WebsiteRoutingRule, ...]:
    """``RoutingRules``: one to 50 ``RoutingRule`` elements, kept in order
    (the website endpoint applies the first that matches)."""
    rules: list[WebsiteRoutingRule] = []
    for child in element:
        if child.tag != "RoutingRule":
            raise errors.MalformedXML()
        rules.append(_parse_rule(child))
    if not rules:
        raise errors.MalformedXML()
    if len(rules) > MAX_ROUTING_RULES:
        raise _invalid(
            f"The number of routing rules must not exceed allowed limit of {MAX_ROUTING_RULES} rules.",
            "RoutingRules",
            str(len(rules)),
        )
    return tuple(rules)


def _parse_rule(element: Element) -> WebsiteRoutingRule:
    parts = single_children(element, ("Condition", "Redirect"))
    if "Redirect" not in parts:
        raise errors.MalformedXML()
    prefix: str | None = None
    code: str | None = None
    if "Condition" in parts:
        condition = single_children(parts["Condition"], ("KeyPrefixEquals", "HttpErrorCodeReturnedEquals"))
        if not condition:
            raise _invalid(
                "Condition cannot be empty. To redirect all requests without a condition, "
                "the condition element shouldn't be present.",
                "Condition",
                "",
            )
        if "KeyPrefixEquals" in condition:
            prefix = leaf_text(condition["KeyPrefixEquals"])
        if "HttpErrorCodeReturnedEquals" in condition:
            code = leaf_text(condition["HttpErrorCodeReturnedEquals"]).strip()
            if not (code.isascii() and code.isdigit() and len(code) == 3 and code[0] in "45"):
                raise _invalid(
                    f"The provided HTTP error code ({code}) is not valid. Valid codes are 4XX or 5XX.",
                    "HttpErrorCodeReturnedEquals",
                    code,
                )
    return WebsiteRoutingRule(prefix, code, _parse_redirect(parts["Redirect"]))


def _parse_redirect(element: Element) -> WebsiteRedirect:
    """A rule's ``Redirect``: what it changes in the request's URL."""
    parts = single_children(
        element, ("HostName", "Protocol", "ReplaceKeyPrefixWith", "ReplaceKeyWith", "HttpRedirectCode")
    )
    if not parts:
        raise _invalid("Redirect cannot be empty", "Redirect", "")
    if "ReplaceKeyPrefixWith" in parts and "ReplaceKeyWith" in parts:
        raise _invalid(
            "You can only define ReplaceKeyPrefix or ReplaceKey but not both.", "ReplaceKeyPrefixWith", "not null"
        )
    code = leaf_text(parts["HttpRedirectCode"]).strip() if "HttpRedirectCode" in parts else None
    if code is not None and not (code.isascii() and code.isdigit() and len(code) == 3 and code[0] == "3" and code != "300"):
        raise _invalid(
            f"The provided HTTP redirect code ({code}) is not valid. Valid codes are 3XX except 300.",
            "HttpRedirectCode",
            code,
        )
    return WebsiteRedirect(
        host_name=_host_name(parts["HostName"]) if "HostName" in parts else None,
        protocol=_protocol(parts["Protocol"]) if "Protocol" in parts else None,
        replace_key_prefix_with=leaf_text(parts["ReplaceKeyPrefixWith"]) if "ReplaceKeyPrefixWith" in parts else None,
        replace_key_with=leaf_text(parts["ReplaceKeyWith"]) if "ReplaceKeyWith" in parts else None,
        http_redirect_code=code,
    )


def _host_name(element: Element) -> str:
    """A redirect's ``HostName``, sent back in a Location header as it is
    (the key part is percent-encoded): no control characters and no
    whitespace, which no host name has."""
    host = leaf_text(element).strip()
    if any(c.isspace() for c in host):
        raise _invalid("The HostName is not well formed", "HostName", host)
    check_field_value(host, "HostName", "HostName")
    return host


def _protocol(element: Element) -> str:
    protocol = leaf_text(element).strip()
    if protocol not in _PROTOCOLS:
        raise _invalid(
            "Invalid protocol, protocol can be http or https. If not defined the protocol will be selected "
            "automatically.",
            "Protocol",
            protocol,
        )
    return protocol


def _required(element: Element, tag: str) -> str:
    """The text of the one child ``tag`` an element must have."""
    parts = single_children(element, (tag,))
    if tag not in parts:
        raise errors.MalformedXML()
    return leaf_text(parts[tag])


def website_configuration_xml(config: WebsiteConfiguration) -> bytes:
    """GetBucketWebsite's document: the configuration as it was stored."""
    out = [XML_DECLARATION, f'<WebsiteConfiguration xmlns="{S3_NS}">']
    if config.redirect_all is not None:
        out.append(f"<RedirectAllRequestsTo>{_redirect_fields(config.redirect_all)}</RedirectAllRequestsTo>")
    if config.index_suffix is not None:
        out.append(f"<IndexDocument><Suffix>{escape(config.index_suffix)}</Suffix></IndexDocument>")
    if config.error_key is not None:
        out.append(f"<ErrorDocument><Key>{escape(config.error_key)}</Key></ErrorDocument>")
    if config.routing_rules:
        out.append("<RoutingRules>")
        for rule in config.routing_rules:
            out.append("<RoutingRule>")
            if rule.key_prefix_equals is not None or rule.http_error_code_returned_equals is not None:
                out.append("<Condition>")
                if rule.http_error_code_returned_equals is not None:
                    code = escape(rule.http_error_code_returned_equals)
                    out.append(f"<HttpErrorCodeReturnedEquals>{code}</HttpErrorCodeReturnedEquals>")
                if rule.key_prefix_equals is not None:
                    out.append(f"<KeyPrefixEquals>{escape(rule.key_prefix_equals)}</KeyPrefixEquals>")
                out.append("</Condition>")
            out.append(f"<Redirect>{_redirect_fields(rule.redirect)}</Redirect>")
            out.append("</RoutingRule>")
        out.append("</RoutingRules>")
    out.append("</WebsiteConfiguration>")
    return "".join(out).encode("utf-8")


def _redirect_fields(r: WebsiteRedirect) -> str:
    fields = (
        ("HostName", r.host_name),
        ("HttpRedirectCode", r.http_redirect_code),
        ("Protocol", r.protocol),
        ("ReplaceKeyPrefixWith", r.replace_key_prefix_with),
        ("ReplaceKeyWith", r.replace_key_with),
    )
    return "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields if value is not None)


_REASONS = {301: "Moved Permanently", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}


def error_html(error: errors.S3Error, request_id: str) -> bytes:
    """The HTML page a website endpoint answers an error with (AWS's
    layout: the status as title, then code, message, the error's own
    fields and the request id as a list)."""
    title = f"{error.status} {_REASONS.get(error.status, 'Error')}"
    items = [("Code", error.code), ("Message", error.message), *error.fields.items(),
             ("RequestId", request_id), ("HostId", request_id)]
    rows = "".join(f"<li>{html.escape(name)}: {html.escape(value)}</li>\n" for name, value in items)
    page = (f"<html>\n<head><title>{title}</title></head>\n<body>\n<h1>{title}</h1>\n<ul>\n{rows}</ul>\n"
            "<hr/>\n</body>\n</html>\n")
    return page.encode("utf-8")
