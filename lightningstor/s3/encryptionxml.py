"""The ``ServerSideEncryptionConfiguration`` document of PutBucketEncryption
and GetBucketEncryption.

Parsing refuses what does not follow AWS's schema (``MalformedXML``: an
unknown or repeated element, no rule, an unknown ``SSEAlgorithm``); the
KMS algorithms AWS knows are 501 NotImplemented (this server has no KMS),
and a ``KMSMasterKeyID`` beside ``AES256`` is AWS's 400 InvalidArgument.
Kept apart from :mod:`lightningstor.s3.xmlio`, whose safe parser it uses.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element

from lightningstor import errors
from lightningstor.core.sse import AES256
from lightningstor.core.types import BucketEncryption
from lightningstor.s3.xmlio import S3_NS, XML_DECLARATION, expect_root, leaf_text

_ROOT = "ServerSideEncryptionConfiguration"
_KMS = ("aws:kms", "aws:kms:dsse")


def parse_encryption_configuration(body: bytes) -> BucketEncryption:
    """PutBucketEncryption body -> the bucket's default encryption.

    AWS takes exactly one ``Rule`` (its API reference: the configuration
    holds a list, but only one rule is allowed)."""
    root = expect_root(body, _ROOT, max_size=64 * 1024)
    rules = list(root)
    if len(rules) != 1 or rules[0].tag != "Rule":
        raise errors.MalformedXML()
    return _parse_rule(rules[0])


def _parse_rule(rule: Element) -> BucketEncryption:
    algorithm: str | None = None
    key_id: str | None = None
    bucket_key: bool | None = None
    seen: set[str] = set()
    for child in rule:
        if child.tag in seen:
            raise errors.MalformedXML()
        seen.add(child.tag)
        if child.tag == "ApplyServerSideEncryptionByDefault":
            algorithm, key_id = _parse_default(child)
        elif child.tag == "BucketKeyEnabled":
            text = leaf_text(child).strip().lower()
            if text not in ("true", "false"):
                raise errors.MalformedXML()
            bucket_key = text == "true"
        else:
            raise errors.MalformedXML()
    if algorithm is None:
        raise errors.MalformedXML()
    if algorithm in _KMS:
        raise errors.NotImplementedS3(f"Default encryption with {algorithm} is not supported by LightningStor")
    if algorithm != AES256:
        raise errors.MalformedXML()
    if key_id is not None:
        raise errors.InvalidArgument(
            "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms or aws:kms:dsse",
            ArgumentName="ApplyServerSideEncryptionByDefault",
        )
    return BucketEncryption(AES256, bucket_key)


def _parse_default(element: Element) -> tuple[str | None, str | None]:
    """(SSEAlgorithm, KMSMasterKeyID) of ``ApplyServerSideEncryptionByDefault``."""
    values: dict[str, str] = {}
    for child in element:
        if child.tag not in ("SSEAlgorithm", "KMSMasterKeyID") or child.tag in values:
            raise errors.MalformedXML()
        values[child.tag] = leaf_text(child).strip()
    return values.get("SSEAlgorithm"), values.get("KMSMasterKeyID")


def encryption_configuration_xml(config: BucketEncryption) -> bytes:
    """GetBucketEncryption: the rule as stored (BucketKeyEnabled false when
    never sent, as AWS answers)."""
    bucket_key = "true" if config.bucket_key_enabled else "false"
    return (
        f'{XML_DECLARATION}<{_ROOT} xmlns="{S3_NS}"><Rule><ApplyServerSideEncryptionByDefault>'
        f"<SSEAlgorithm>{config.algorithm}</SSEAlgorithm></ApplyServerSideEncryptionByDefault>"
        f"<BucketKeyEnabled>{bucket_key}</BucketKeyEnabled></Rule></{_ROOT}>"
    ).encode()
