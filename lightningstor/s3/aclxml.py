"""The XML of S3 ACLs and Object Ownership: ``AccessControlPolicy`` (PutBucketAcl,
PutObjectAcl, GetBucketAcl, GetObjectAcl) and ``OwnershipControls``.

Parsing goes through :func:`lightningstor.s3.xmlio.parse_xml` (no DTDs, a
size cap, the S3 namespace stripped).  A document that is not well-formed
XML is ``MalformedXML``; a well-formed one that breaks the ACL schema is
``MalformedACLError``, as AWS answers.  The parser drops attributes, so a
grantee's type is read from what it holds (``ID``: CanonicalUser, ``URI``:
Group, ``EmailAddress``: AmazonCustomerByEmail), which is what its
``xsi:type`` must say anyway.  Rendering writes ``xsi:type`` on every
``Grantee``, as AWS does (boto3 and s3cmd read it).
"""

from __future__ import annotations

from collections.abc import Mapping
from xml.etree.ElementTree import Element

from lightningstor import errors
from lightningstor.core import acl as acls
from lightningstor.core.types import Acl, Grant
from lightningstor.s3 import xmlio
from lightningstor.s3.xmlio import XSI_NS, escape

# An ACL document of 100 grants is a few KiB; AWS caps PutBucketAcl bodies
# far below the general configuration limit.
MAX_ACL_BODY = 64 << 10

_GRANTEE_ELEMENTS = {"ID": "id", "URI": "uri", "EmailAddress": "emailAddress"}


def _malformed() -> errors.S3Error:
    return errors.MalformedACLError()


def parse_access_control_policy(body: bytes, *, max_size: int = MAX_ACL_BODY) -> Acl:
    """PutBucketAcl / PutObjectAcl body -> the ACL it describes.

    The owner's ``ID`` is required (the caller checks it names the
    resource's owner); grants need a grantee and a known permission.
    """
    root = xmlio.parse_xml(body, max_size=max_size)
    if root.tag != "AccessControlPolicy":
        raise _malformed()
    children = _single(root, ("Owner", "AccessControlList"))
    owner_element = children.get("Owner")
    if owner_element is None:
        raise _malformed()
    owner_parts = _single(owner_element, ("ID", "DisplayName"))
    if "ID" not in owner_parts:
        raise _malformed()
    owner = _text(owner_parts["ID"]).strip()
    grants: list[Grant] = []
    listing = children.get("AccessControlList")
    if listing is not None:
        for grant in listing:
            if grant.tag != "Grant":
                raise _malformed()
            grants.append(_grant(grant))
            if len(grants) > acls.MAX_GRANTS:
                raise errors.MalformedACLError(f"An ACL may hold at most {acls.MAX_GRANTS} grants")
    return Acl(owner, tuple(grants))


def _grant(element: Element) -> Grant:
    parts = _single(element, ("Grantee", "Permission"))
    if "Grantee" not in parts or "Permission" not in parts:
        raise _malformed()
    permission = _text(parts["Permission"]).strip()
    if permission not in acls.PERMISSIONS:
        raise _malformed()
    grantee = _single(parts["Grantee"], ("ID", "URI", "EmailAddress", "DisplayName"))
    named = [tag for tag in _GRANTEE_ELEMENTS if tag in grantee]
    if len(named) != 1:
        raise _malformed()
    tag = named[0]
    return acls.grantee_grant(_GRANTEE_ELEMENTS[tag], _text(grantee[tag]).strip(), permission, "Grantee")


def _single(element: Element, allowed: tuple[str, ...]) -> dict[str, Element]:
    found: dict[str, Element] = {}
    for child in element:
        if child.tag not in allowed or child.tag in found:
            raise _malformed()
        found[child.tag] = child
    return found


def _text(element: Element) -> str:
    if len(element):
        raise _malformed()
    return element.text or ""


def access_control_policy_xml(acl: Acl, names: Mapping[str, str]) -> bytes:
    """GetBucketAcl / GetObjectAcl: ``acl`` with ``xsi:type`` on each
    grantee; canonical users carry their ID and DisplayName (``names``:
    principal id -> display name, the id itself when absent)."""
    owner_name = names.get(acl.owner) or acl.owner
    parts = [
        xmlio.XML_DECLARATION,
        f'<AccessControlPolicy xmlns="{xmlio.S3_NS}">',
        f"<Owner><ID>{escape(acl.owner)}</ID><DisplayName>{escape(owner_name)}</DisplayName></Owner>",
        "<AccessControlList>",
    ]
    for grant in acl.grants:
        if grant.grantee_type == acls.CANONICAL_USER:
            name = names.get(grant.grantee) or grant.grantee
            grantee = (
                f'<Grantee xmlns:xsi="{XSI_NS}" xsi:type="CanonicalUser">'
                f"<ID>{escape(grant.grantee)}</ID><DisplayName>{escape(name)}</DisplayName></Grantee>"
            )
        else:
            grantee = f'<Grantee xmlns:xsi="{XSI_NS}" xsi:type="Group"><URI>{escape(grant.grantee)}</URI></Grantee>'
        parts.append(f"<Grant>{grantee}<Permission>{grant.permission}</Permission></Grant>")
    parts.append("</AccessControlList></AccessControlPolicy>")
    return "".join(parts).encode("utf-8", "xmlcharrefreplace")


def parse_ownership_controls(body: bytes, *, max_size: int = MAX_ACL_BODY) -> str:
    """PutBucketOwnershipControls body -> its one rule's Object Ownership;
    anything else (no rule, several, an unknown value) is MalformedXML."""
    root = xmlio.expect_root(body, "OwnershipControls", max_size=max_size)
    rules = list(root)
    if len(rules) != 1 or rules[0].tag != "Rule":
        raise errors.MalformedXML()
    rule = xmlio.single_children(rules[0], ("ObjectOwnership",))
    if "ObjectOwnership" not in rule:
        raise errors.MalformedXML()
    value = xmlio.leaf_text(rule["ObjectOwnership"]).strip()
    if value not in acls.OWNERSHIPS:
        raise errors.MalformedXML()
    return value


def ownership_controls_xml(ownership: str) -> bytes:
    """GetBucketOwnershipControls."""
    return (
        f'{xmlio.XML_DECLARATION}<OwnershipControls xmlns="{xmlio.S3_NS}"><Rule>'
        f"<ObjectOwnership>{escape(ownership)}</ObjectOwnership></Rule></OwnershipControls>"
    ).encode()
