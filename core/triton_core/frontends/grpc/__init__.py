"""The gRPC front end: inference.GRPCInferenceService and grpc.health.v1.Health on grpc.aio."""

from .service import GrpcFrontEnd, GrpcOptions, InferenceServicer

__all__ = ["GrpcFrontEnd", "GrpcOptions", "InferenceServicer"]
