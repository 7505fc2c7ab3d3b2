// Package inference is infergate's streaming pipeline: it consumes requests
// from a Kafka topic, decodes and validates them against the model's
// signature, micro-batches them, predicts through a Predictor (the embedded
// model server in process, or TF Serving over gRPC), and produces one result
// or dead-letter record per request, in the order of the requests within
// their partition, committing offsets only for work whose output the broker
// acknowledged (or atomically with it, in exactly-once mode).
//
// docs/pipeline.md describes the design, the error classes and the measured
// throughput.
package inference

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
)

// Predictor is what the pipeline needs from a model server. Errors carry gRPC
// status codes (status.Code(err)); they decide the error class of the
// requests involved.
type Predictor interface {
	Predict(ctx context.Context, spec model.Spec, inputs map[string]*tensor.Tensor) (*model.Result, error)
	Metadata(ctx context.Context, spec model.Spec) (*model.Metadata, error)
}

// Error classes, as DESIGN.md's table names them; they are the values of the
// DLQ header error.class and of the store's Record.Class.
const (
	ClassDecode      = "decode"
	ClassValidation  = "validation"
	ClassModel       = "model"
	ClassUnavailable = "unavailable" // never dead-lettered: retried, then the circuit opens
	ClassInternal    = "internal"
)

// Classes lists the classes a DLQ record can have.
var Classes = [4]string{ClassDecode, ClassValidation, ClassModel, ClassInternal}

// classError is an error with its class attached, made where the class is
// known (decoding, validation) rather than guessed from a status code.
type classError struct {
	class string
	err   error
}

func (e *classError) Error() string { return e.err.Error() }
func (e *classError) Unwrap() error { return e.err }

func withClass(class string, err error) error { return &classError{class: class, err: err} }

// classOf sorts an error from a model call into a class.
func classOf(err error) string {
	var ce *classError
	if errors.As(err, &ce) {
		return ce.class
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.NotFound:
		return ClassModel
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return ClassUnavailable
	}
	if unreachable(err) {
		return ClassUnavailable
	}
	return ClassInternal
}

// unreachable reports errors that mean "the model server could not be
// reached" even when they do not come wrapped in a gRPC status: a Predictor
// over another transport, or a dial that failed before any RPC.
func unreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}
