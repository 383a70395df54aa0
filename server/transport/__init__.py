"""seamcut.server.transport: the gRPC face of the server (grpc.aio).

The only layer that imports protobuf or grpc: converts messages to domain objects
(``convert``), maps exceptions to status codes (``status``), hosts the servicer,
health and reflection (``servicer``, ``app``), TLS credentials and the bearer-token
interceptor (``security``). May import everything below it.
"""
