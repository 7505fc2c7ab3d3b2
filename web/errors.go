package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/store"
)

// APIError is the one error type handlers return: an HTTP status, the message the client
// sees, and the cause for the log. Everything else is classified by statusOf.
type APIError struct {
	Code    int
	Message string
	Err     error
	// RetryAfter, in whole seconds, is sent as the Retry-After header when > 0.
	RetryAfter int
}

func (e *APIError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%d %s", e.Code, e.Message)
}

func (e *APIError) Unwrap() error { return e.Err }

// apiErr builds an APIError whose message is the formatted text.
func apiErr(code int, format string, args ...any) *APIError {
	return &APIError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// badRequest wraps err as a 400 whose message is err's text, for decoding failures where the
// text is what the client must fix.
func badRequest(format string, args ...any) *APIError {
	return apiErr(http.StatusBadRequest, format, args...)
}

// statusOf maps an error from a Backend, the store or echo to a status code.
func statusOf(err error) int {
	var ae *APIError
	var he *echo.HTTPError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae.Code
	case errors.As(err, &he):
		return he.Code
	case errors.As(err, &mbe), errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrNotFound), errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrInvalid), errors.Is(err, store.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrUnsupported):
		return http.StatusNotImplemented
	case errors.Is(err, ErrUnavailable), errors.Is(err, store.ErrClosed):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	// The model server and the TF Serving client return gRPC status errors; status.FromError
	// finds them even when wrapped.
	if st, ok := status.FromError(err); ok && st.Code() != codes.OK && st.Code() != codes.Unknown {
		switch st.Code() {
		case codes.NotFound:
			return http.StatusNotFound
		case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
			return http.StatusBadRequest
		case codes.AlreadyExists, codes.Aborted:
			return http.StatusConflict
		case codes.Unimplemented:
			return http.StatusNotImplemented
		case codes.Unavailable, codes.ResourceExhausted:
			return http.StatusServiceUnavailable
		case codes.DeadlineExceeded, codes.Canceled:
			return http.StatusGatewayTimeout
		case codes.PermissionDenied, codes.Unauthenticated:
			return http.StatusBadGateway
		}
	}
	return http.StatusInternalServerError
}

// errorMessage is what the client sees. Internal errors still carry their text: the caller is
// the authenticated operator, and "500 internal error" alone helps nobody on a factory floor.
func errorMessage(err error) string {
	var ae *APIError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
		if ae.Err != nil && ae.Message == "" {
			return ae.Err.Error()
		}
		return ae.Message
	case errors.As(err, &he):
		return fmt.Sprint(he.Message)
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.OK && st.Code() != codes.Unknown {
		return st.Message()
	}
	return err.Error()
}

// errorHandler is echo's HTTPErrorHandler: every error becomes {"error": "..."} with the
// mapped status, and server-side failures are logged.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code := statusOf(err)
	msg := errorMessage(err)
	if code >= 500 {
		s.log.Warn("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "status", code, "err", err)
	} else {
		s.log.Debug("request rejected", "method", c.Request().Method, "path", c.Request().URL.Path, "status", code, "err", err)
	}
	var ae *APIError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		c.Response().Header().Set("Retry-After", fmt.Sprint(ae.RetryAfter))
	}
	if code == http.StatusUnauthorized {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="infergate"`)
	}
	var werr error
	if c.Request().Method == http.MethodHead {
		werr = c.NoContent(code)
	} else {
		werr = c.JSON(code, map[string]string{"error": msg})
	}
	if werr != nil {
		s.log.Debug("writing error response", "err", werr)
	}
}

// WithKind gives err one of the kinds above (ErrNotFound, ErrInvalid, …), so it maps to that
// status, without adding the kind's text: a component's error that already names its kind
// ("conflict: rollout … is running") reaches the client as it is, not as "conflict: conflict: …".
func WithKind(kind, err error) error {
	if err == nil {
		return nil
	}
	return kindedErr{kind, err}
}

type kindedErr struct{ kind, err error }

func (k kindedErr) Error() string   { return k.err.Error() }
func (k kindedErr) Unwrap() []error { return []error{k.kind, k.err} }
