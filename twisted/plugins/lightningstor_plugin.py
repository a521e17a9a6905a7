from twisted.application.service import ServiceMaker

LightningStor = ServiceMaker(
    "LightningStor",
    "lightningstor.tap",
    "S3-compatible object store (S3 HTTP API, gRPC API)",
    "lightningstor",
)
