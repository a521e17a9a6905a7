// The AWS SDK for JavaScript v3 against a running LightningStor.
//
// Usage: node scenarios.mjs SCENARIO [SCENARIO ...]
// Environment: LS_ENDPOINT (http://host:port), LS_ACCESS_KEY, LS_SECRET_KEY,
// LS_BUCKET (an existing bucket; the "buckets" scenario creates it).
//
// Each scenario prints one JSON line: {"scenario": name, "ok": true, ...facts}
// or {"scenario": name, "ok": false, "error": ..., "stack": ...}.  The facts
// are what tests/integration/test_js_sdk.py asserts on (sizes, SHA-256 of the
// bytes sent and read back, checksums and statuses the SDK saw), so a check
// never depends on this script deciding what "correct" means by itself.
// The SDK runs with its defaults (request checksums WHEN_SUPPORTED, response
// validation WHEN_SUPPORTED) unless a scenario says otherwise.

import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";

import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
  paginateListObjectsV2,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";

const MiB = 1024 * 1024;
const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const ENDPOINT = env("LS_ENDPOINT");
const ACCESS_KEY = env("LS_ACCESS_KEY");
const SECRET_KEY = env("LS_SECRET_KEY");
const BUCKET = env("LS_BUCKET");

function client(overrides = {}) {
  return new S3Client({
    endpoint: ENDPOINT,
    region: "us-east-1",
    forcePathStyle: true,
    maxAttempts: 1,
    credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY },
    ...overrides,
  });
}

const sha256 = (data) => createHash("sha256").update(data).digest("hex");
// CRC32 (IEEE) computed here rather than by node:zlib, which has it only
// from Node 20.15: the expected values never come from the SDK under test.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32b64 = (data) => {
  let crc = 0xffffffff;
  for (const byte of data) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  const out = Buffer.alloc(4);
  out.writeUInt32BE((crc ^ 0xffffffff) >>> 0);
  return out.toString("base64");
};

// A Readable of `data` in uneven pieces, with no length the SDK could know.
function unknownLengthStream(data, piece = 64 * 1024 + 3) {
  let offset = 0;
  return new Readable({
    read() {
      if (offset >= data.length) {
        this.push(null);
        return;
      }
      this.push(data.subarray(offset, offset + piece));
      offset += piece;
    },
  });
}

// GetObject with the SDK's default response checksum validation (a body
// that does not match the returned checksum makes the read throw); what was
// read and the checksum the SDK saw.
async function getBack(s3, key) {
  const response = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  const body = Buffer.from(await response.Body.transformToByteArray());
  return {
    sha256: sha256(body),
    size: body.length,
    checksumCRC32: response.ChecksumCRC32 ?? null,
    checksumType: response.ChecksumType ?? null,
    contentLength: response.ContentLength,
    etag: response.ETag,
  };
}

// Records the headers of every request `s3` sends, for asserting on what the
// SDK put on the wire (aws-chunked, trailers, checksum mode).
function recordRequests(s3) {
  const seen = [];
  s3.middlewareStack.add(
    (next) => async (args) => {
      const result = await next(args);
      const { method, path, query, headers } = args.request;
      seen.push({ method, path, query, headers: { ...headers } });
      return result;
    },
    { step: "finalizeRequest", priority: "low", name: "lsRecordRequests" },
  );
  return seen;
}

async function putAndGet(key, body, sent, s3 = client()) {
  const wire = recordRequests(s3);
  const put = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
  const back = await getBack(s3, key);
  return {
    key,
    sentSha256: sha256(sent),
    sentSize: sent.length,
    expectedCRC32: crc32b64(sent),
    putETag: put.ETag,
    putChecksumCRC32: put.ChecksumCRC32 ?? null,
    putChecksumType: put.ChecksumType ?? null,
    back,
    putHeaders: wire[0].headers,
    getHeaders: wire[1].headers,
  };
}

const scenarios = {
  async buckets() {
    const s3 = client();
    const created = await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    const head = await s3.send(new HeadBucketCommand({ Bucket: BUCKET }));
    const list = await s3.send(new ListBucketsCommand({}));
    return {
      createStatus: created.$metadata.httpStatusCode,
      headStatus: head.$metadata.httpStatusCode,
      listed: (list.Buckets ?? []).some((b) => b.Name === BUCKET),
      ownerId: list.Owner?.ID ?? null,
    };
  },

  async "put-string"() {
    const text = "Hello from the AWS SDK for JavaScript v3 \u2603\n".repeat(100);
    return putAndGet("js/string.txt", text, Buffer.from(text, "utf8"));
  },

  async "put-buffer"() {
    const data = randomBytes(1 * MiB + 17);
    return putAndGet("js/buffer.bin", data, data);
  },

  async "put-stream"() {
    // A Readable the SDK cannot hash up front: it sends the body aws-chunked
    // with a trailing x-amz-checksum-crc32 (STREAMING-UNSIGNED-PAYLOAD-TRAILER).
    // PutObject needs the length (x-amz-decoded-content-length); the SDK
    // itself refuses a stream without one before sending anything, and
    // points to lib-storage's Upload, which "put-stream-unknown-length" uses.
    const data = randomBytes(3 * MiB + 5);
    const s3 = client();
    const wire = recordRequests(s3);
    const put = await s3.send(new PutObjectCommand({
      Bucket: BUCKET, Key: "js/stream.bin", Body: unknownLengthStream(data), ContentLength: data.length,
    }));
    const back = await getBack(s3, "js/stream.bin");
    return {
      key: "js/stream.bin",
      sentSha256: sha256(data),
      sentSize: data.length,
      expectedCRC32: crc32b64(data),
      putChecksumCRC32: put.ChecksumCRC32 ?? null,
      putChecksumType: put.ChecksumType ?? null,
      back,
      putHeaders: wire[0].headers,
      getHeaders: wire[1].headers,
    };
  },

  async "put-stream-unknown-length"() {
    // A stream of unknown length under one part: lib-storage buffers it and
    // sends one PutObject with the default CRC32.
    const data = randomBytes(2 * MiB + 99);
    const s3 = client();
    const wire = recordRequests(s3);
    const done = await new Upload({
      client: s3, params: { Bucket: BUCKET, Key: "js/stream-unknown.bin", Body: unknownLengthStream(data) },
    }).done();
    const back = await getBack(s3, "js/stream-unknown.bin");
    return {
      key: "js/stream-unknown.bin",
      sentSha256: sha256(data),
      sentSize: data.length,
      expectedCRC32: crc32b64(data),
      etag: done.ETag,
      back,
      requests: wire.map((r) => `${r.method} ${Object.keys(r.query ?? {}).sort().join("&")}`),
      putHeaders: wire[0].headers,
      getHeaders: wire[1].headers,
    };
  },

  async "put-when-required"() {
    const data = randomBytes(256 * 1024 + 1);
    const s3 = client({
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
    return putAndGet("js/when-required.bin", data, data, s3);
  },

  async "head-object"() {
    const s3 = client();
    const data = Buffer.from("head me");
    await s3.send(new PutObjectCommand({
      Bucket: BUCKET, Key: "js/head.txt", Body: data, ContentType: "text/plain",
      Metadata: { colour: "blue" },
    }));
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "js/head.txt", ChecksumMode: "ENABLED" }));
    return {
      contentLength: head.ContentLength,
      contentType: head.ContentType,
      metadata: head.Metadata,
      etag: head.ETag,
      checksumCRC32: head.ChecksumCRC32 ?? null,
      checksumType: head.ChecksumType ?? null,
      expectedCRC32: crc32b64(data),
      lastModified: head.LastModified?.toISOString() ?? null,
    };
  },

  async "list-pages"() {
    const s3 = client();
    const keys = Array.from({ length: 10 }, (_, i) => `js/list/${String(i).padStart(2, "0")}`);
    await Promise.all(keys.map((Key) => s3.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body: Key }))));
    const pages = [];
    for await (const page of paginateListObjectsV2({ client: s3, pageSize: 3 }, { Bucket: BUCKET, Prefix: "js/list/" })) {
      pages.push({ keys: (page.Contents ?? []).map((o) => o.Key), truncated: page.IsTruncated, keyCount: page.KeyCount });
    }
    const delimited = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "js/", Delimiter: "/" }));
    return {
      pages,
      commonPrefixes: (delimited.CommonPrefixes ?? []).map((p) => p.Prefix),
    };
  },

  async "copy-object"() {
    const s3 = client();
    const data = randomBytes(100_000);
    await s3.send(new PutObjectCommand({
      Bucket: BUCKET, Key: "js/copy-src.bin", Body: data, Metadata: { origin: "source" },
    }));
    const copied = await s3.send(new CopyObjectCommand({
      Bucket: BUCKET, Key: "js/copy-dst.bin", CopySource: `${BUCKET}/js/copy-src.bin`,
    }));
    const back = await getBack(s3, "js/copy-dst.bin");
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "js/copy-dst.bin" }));
    return {
      sentSha256: sha256(data),
      copyETag: copied.CopyObjectResult?.ETag ?? null,
      copyLastModified: copied.CopyObjectResult?.LastModified?.toISOString() ?? null,
      copyChecksumCRC32: copied.CopyObjectResult?.ChecksumCRC32 ?? null,
      copyChecksumType: copied.CopyObjectResult?.ChecksumType ?? null,
      expectedCRC32: crc32b64(data),
      metadata: head.Metadata,
      back,
    };
  },

  async "delete-objects"() {
    const s3 = client();
    const keys = ["js/del/a", "js/del/b", "js/del/c"];
    await Promise.all(keys.map((Key) => s3.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body: Key }))));
    const deleted = await s3.send(new DeleteObjectsCommand({
      Bucket: BUCKET,
      Delete: { Objects: [...keys, "js/del/never-existed"].map((Key) => ({ Key })) },
    }));
    const left = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "js/del/" }));
    return {
      deleted: (deleted.Deleted ?? []).map((d) => d.Key).sort(),
      errors: deleted.Errors ?? [],
      left: left.KeyCount,
    };
  },

  async "upload-multipart"() {
    // lib-storage: 20 MiB + a bit from a stream, 5 MiB parts, 4 at a time.
    const s3 = client();
    const wire = recordRequests(s3);
    const data = randomBytes(20 * MiB + 1234);
    const upload = new Upload({
      client: s3,
      params: { Bucket: BUCKET, Key: "js/multipart.bin", Body: unknownLengthStream(data, 256 * 1024) },
      partSize: 5 * MiB,
      queueSize: 4,
    });
    const done = await upload.done();
    const back = await getBack(s3, "js/multipart.bin");
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "js/multipart.bin", ChecksumMode: "ENABLED" }));
    return {
      sentSha256: sha256(data),
      sentSize: data.length,
      etag: done.ETag,
      completeChecksumCRC32: done.ChecksumCRC32 ?? null,
      completeChecksumType: done.ChecksumType ?? null,
      headChecksumCRC32: head.ChecksumCRC32 ?? null,
      headChecksumType: head.ChecksumType ?? null,
      parts: wire.filter((r) => r.query?.partNumber).length,
      createHeaders: wire.find((r) => r.method === "POST" && "uploads" in (r.query ?? {}))?.headers ?? null,
      back,
    };
  },

  async "multipart-full-object"() {
    // Low level: a CRC32 FULL_OBJECT multipart upload, completed with the
    // whole object's CRC32 (the kind lib-storage does not make by default).
    const s3 = client();
    const data = randomBytes(5 * MiB + 4321);
    const partsData = [data.subarray(0, 5 * MiB), data.subarray(5 * MiB)];
    const created = await s3.send(new CreateMultipartUploadCommand({
      Bucket: BUCKET, Key: "js/full-object.bin", ChecksumAlgorithm: "CRC32", ChecksumType: "FULL_OBJECT",
    }));
    const parts = [];
    for (const [i, body] of partsData.entries()) {
      const part = await s3.send(new UploadPartCommand({
        Bucket: BUCKET, Key: "js/full-object.bin", UploadId: created.UploadId, PartNumber: i + 1,
        Body: body, ChecksumAlgorithm: "CRC32",
      }));
      parts.push({ PartNumber: i + 1, ETag: part.ETag, ChecksumCRC32: part.ChecksumCRC32 });
    }
    const done = await s3.send(new CompleteMultipartUploadCommand({
      Bucket: BUCKET, Key: "js/full-object.bin", UploadId: created.UploadId,
      ChecksumCRC32: crc32b64(data), ChecksumType: "FULL_OBJECT",
      MultipartUpload: { Parts: parts },
    }));
    const back = await getBack(s3, "js/full-object.bin");
    return {
      sentSha256: sha256(data),
      expectedCRC32: crc32b64(data),
      createChecksumAlgorithm: created.ChecksumAlgorithm ?? null,
      createChecksumType: created.ChecksumType ?? null,
      partCRC32s: parts.map((p) => p.ChecksumCRC32 ?? null),
      expectedPartCRC32s: partsData.map(crc32b64),
      completeChecksumCRC32: done.ChecksumCRC32 ?? null,
      completeChecksumType: done.ChecksumType ?? null,
      back,
    };
  },

  async "upload-part-copy"() {
    // A CRC32 multipart upload of one uploaded part and one UploadPartCopy of
    // a range of another object, completed with the part checksums each
    // call returned (AWS requires them for a COMPOSITE upload's parts).
    const s3 = client();
    const source = randomBytes(2 * MiB);
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "js/upc-src.bin", Body: source }));
    const first = randomBytes(5 * MiB);
    const key = "js/upc-dst.bin";
    const created = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key, ChecksumAlgorithm: "CRC32" }));
    const uploaded = await s3.send(new UploadPartCommand({
      Bucket: BUCKET, Key: key, UploadId: created.UploadId, PartNumber: 1, Body: first, ChecksumAlgorithm: "CRC32",
    }));
    const copied = await s3.send(new UploadPartCopyCommand({
      Bucket: BUCKET, Key: key, UploadId: created.UploadId, PartNumber: 2,
      CopySource: `${BUCKET}/js/upc-src.bin`, CopySourceRange: "bytes=100-1099",
    }));
    const parts = [
      { PartNumber: 1, ETag: uploaded.ETag, ChecksumCRC32: uploaded.ChecksumCRC32 },
      { PartNumber: 2, ETag: copied.CopyPartResult?.ETag, ChecksumCRC32: copied.CopyPartResult?.ChecksumCRC32 },
    ];
    const listed = await s3.send(new ListPartsCommand({ Bucket: BUCKET, Key: key, UploadId: created.UploadId }));
    const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: key }));
    const done = await s3.send(new CompleteMultipartUploadCommand({
      Bucket: BUCKET, Key: key, UploadId: created.UploadId, MultipartUpload: { Parts: parts },
    }));
    const back = await getBack(s3, key);
    const whole = Buffer.concat([first, source.subarray(100, 1100)]);
    return {
      sentSha256: sha256(whole),
      sentSize: whole.length,
      copyPartETag: copied.CopyPartResult?.ETag ?? null,
      copyPartCRC32: copied.CopyPartResult?.ChecksumCRC32 ?? null,
      expectedCopyPartCRC32: crc32b64(source.subarray(100, 1100)),
      listedPartCRC32s: (listed.Parts ?? []).map((p) => p.ChecksumCRC32 ?? null),
      listedChecksumAlgorithm: listed.ChecksumAlgorithm ?? null,
      listedChecksumType: listed.ChecksumType ?? null,
      uploads: (uploads.Uploads ?? []).map((u) => ({
        key: u.Key, checksumAlgorithm: u.ChecksumAlgorithm ?? null, checksumType: u.ChecksumType ?? null,
      })),
      completeChecksumCRC32: done.ChecksumCRC32 ?? null,
      completeChecksumType: done.ChecksumType ?? null,
      back,
    };
  },

  async presigned() {
    const s3 = client();
    const data = randomBytes(200_000);
    const key = "js/presigned file+name.bin";
    const putUrl = await getSignedUrl(s3, new PutObjectCommand({ Bucket: BUCKET, Key: key }), { expiresIn: 300 });
    const put = await fetch(putUrl, { method: "PUT", body: data });
    const getUrl = await getSignedUrl(s3, new GetObjectCommand({ Bucket: BUCKET, Key: key }), { expiresIn: 300 });
    const get = await fetch(getUrl);
    const body = Buffer.from(await get.arrayBuffer());
    const unsigned = await fetch(`${ENDPOINT}/${BUCKET}/${encodeURIComponent(key)}`);
    await unsigned.arrayBuffer();
    return {
      key,
      sentSha256: sha256(data),
      putStatus: put.status,
      putBody: await put.text(),
      getStatus: get.status,
      gotSha256: sha256(body),
      unsignedStatus: unsigned.status,
      putUrlHasChecksum: /x-amz-checksum|x-amz-sdk-checksum/i.test(putUrl),
    };
  },

  async errors() {
    const caught = async (promise) => {
      try {
        await promise;
        return { thrown: false };
      } catch (e) {
        return {
          thrown: true,
          name: e.name,
          code: e.Code ?? null,
          message: e.message,
          status: e.$metadata?.httpStatusCode ?? null,
          fault: e.$fault ?? null,
          requestId: e.$metadata?.requestId ?? null,
        };
      }
    };
    const s3 = client();
    const bad = client({ credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: `${SECRET_KEY}x` } });
    return {
      missingKey: await caught(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "js/no-such-key" }))),
      missingHead: await caught(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "js/no-such-key" }))),
      missingBucket: await caught(s3.send(new ListObjectsV2Command({ Bucket: `${BUCKET}-missing` }))),
      wrongSecret: await caught(bad.send(new PutObjectCommand({ Bucket: BUCKET, Key: "js/wrong-secret", Body: "x" }))),
    };
  },

  async conditional() {
    const s3 = client();
    const key = "js/conditional.txt";
    const first = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: "first", IfNoneMatch: "*" }));
    let second;
    try {
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: "second", IfNoneMatch: "*" }));
      second = { thrown: false };
    } catch (e) {
      second = { thrown: true, name: e.name, status: e.$metadata?.httpStatusCode ?? null };
    }
    const back = await getBack(s3, key);
    return { firstStatus: first.$metadata.httpStatusCode, second, backSha256: back.sha256, firstSha256: sha256("first") };
  },
};

async function run(name) {
  const scenario = scenarios[name];
  if (!scenario) return { scenario: name, ok: false, error: `unknown scenario (known: ${Object.keys(scenarios).join(", ")})` };
  try {
    return { scenario: name, ok: true, ...(await scenario()) };
  } catch (e) {
    return {
      scenario: name,
      ok: false,
      error: `${e.name}: ${e.message}`,
      status: e.$metadata?.httpStatusCode ?? null,
      stack: e.stack,
    };
  }
}

const names = process.argv.slice(2);
if (names.length === 0) {
  console.error(`usage: node scenarios.mjs SCENARIO...; scenarios: ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
let failed = false;
for (const name of names) {
  const result = await run(name);
  failed ||= !result.ok;
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
process.exit(failed ? 1 : 0);
