"""Storage nodes: ``twistd lightningstor-node`` serving chunks over gRPC (SPEC §5.2)."""
