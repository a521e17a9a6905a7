"""The native gRPC API (SPEC §4.1): ``lightningstor.v1`` ObjectService and BucketService.

A grpcio server with its own thread pool runs inside the twistd process
(:class:`lightningstor.grpc.service.GrpcService`); its servicers translate
protobuf messages into calls of the same core the S3 layer uses, reaching
the reactor with ``blockingCallFromThread``.  Generated code lives in
:mod:`lightningstor.grpc.gen` (``tox -e proto`` regenerates it).
"""
