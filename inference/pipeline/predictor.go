// Package pipeline is infergate's streaming pipeline: it consumes requests
// from a Kafka topic, decodes and validates them against the model's
// signature, micro-batches them, predicts through a Predictor (the embedded
// model server in process, or TF Serving over gRPC), and produces one result
// or dead-letter record per request, in the order of the requests within
// their partition, committing offsets only for work whose output the broker
// acknowledged (or atomically with it, in exactly-once mode).
//
// docs/pipeline.md describes the design, the error classes and the measured
// throughput.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/recordcodec"
	"github.com/infergate/infergate/inference/tensor"
)

// Predictor is what the pipeline needs from a model server. Errors carry gRPC
// status codes (status.Code(err)); they decide the error class of the
// requests involved.
type Predictor interface {
	Predict(ctx context.Context, spec model.Spec, inputs map[string]*tensor.Tensor) (*model.Result, error)
	Metadata(ctx context.Context, spec model.Spec) (*model.Metadata, error)
}

// Error classes, as docs/pipeline.md's table ("Errors") names them; they are the values of the
// DLQ header error.class and of the store's Record.Class.
const (
	ClassDecode      = recordcodec.ClassDecode
	ClassValidation  = recordcodec.ClassValidation
	ClassModel       = "model"
	ClassUnavailable = "unavailable" // never dead-lettered: retried, then the circuit opens
	ClassInternal    = "internal"
	// ClassTimeout and ClassExhausted are model calls that ran out of time
	// (DEADLINE_EXCEEDED, or pipeline.predict_timeout) or of resources
	// (RESOURCE_EXHAUSTED). A request is dead-lettered with them only when
	// it alone failed pipeline.max_attempts times while other requests
	// succeeded; when every call fails they are treated as unavailability.
	ClassTimeout   = "timeout"
	ClassExhausted = "resource_exhausted"
	// ClassResultTooLarge is a prediction the results topic cannot take:
	// its result record is larger than the topic's max.message.bytes. The
	// model answered; a replay succeeds once the topic takes larger records.
	ClassResultTooLarge = "result_too_large"
)

// Classes lists the classes a DLQ record can have.
var Classes = [7]string{ClassDecode, ClassValidation, ClassModel, ClassInternal, ClassTimeout, ClassExhausted, ClassResultTooLarge}

// classError is an error with its class attached, made where the class is
// known (decoding, validation) rather than guessed from a status code; the
// request codec makes them too.
type classError = recordcodec.Error

func withClass(class string, err error) error { return &classError{Class: class, Err: err} }

func validationErr(format string, args ...any) error {
	return withClass(ClassValidation, fmt.Errorf(format, args...))
}

// classOf sorts an error from a model call into a class.
func classOf(err error) string {
	var ce *classError
	if errors.As(err, &ce) {
		return ce.Class
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.NotFound:
		return ClassModel
	case codes.Unavailable:
		return ClassUnavailable
	case codes.DeadlineExceeded:
		return ClassTimeout
	case codes.ResourceExhausted:
		return ClassExhausted
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ClassTimeout // pipeline.predict_timeout, from a Predictor that returns the context's error
	}
	if unreachable(err) {
		return ClassUnavailable
	}
	return ClassInternal
}

// slow reports the classes that may be the request's fault (it is too big
// or too hard for the model server) or the server's (it is overloaded or
// hung): the per-request budget tells them apart.
func slow(class string) bool { return class == ClassTimeout || class == ClassExhausted }

// down reports errors that mean the model server is not answering at all,
// as the circuit's prober and metadata lookups see it.
func down(err error) bool {
	c := classOf(err)
	return c == ClassUnavailable || slow(c)
}

// unreachable reports errors that mean "the model server could not be
// reached" even when they do not come wrapped in a gRPC status: a Predictor
// over another transport, or a dial that failed before any RPC.
func unreachable(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
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
