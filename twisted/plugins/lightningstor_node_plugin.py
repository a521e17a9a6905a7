from twisted.application.service import ServiceMaker

LightningStorNode = ServiceMaker(
    "LightningStor storage node",
    "lightningstor.node.tap",
    "LightningStor storage node: gRPC chunk service on local disk",
    "lightningstor-node",
)
