// Package tfserving speaks TensorFlow Serving's gRPC API as a client (Client)
// and holds the conversions between infergate's model types and TF Serving's
// protos (SpecToProto, SignatureToProto, MetadataToProto, ...), which the
// embedded model server reuses so both sides agree on one mapping.
package tfserving
