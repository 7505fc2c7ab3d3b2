package appliance

import (
	"errors"
	"testing"

	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/web"
)

// A dead-lettered test request answers with the status its class deserves:
// the request's own fault is 400, the model server's 503, anything else 500.
func TestDLQErrorKinds(t *testing.T) {
	for class, want := range map[string]error{
		"decode":             web.ErrInvalid,
		"validation":         web.ErrInvalid,
		"model":              web.ErrInvalid,
		"unavailable":        web.ErrUnavailable,
		"timeout":            web.ErrUnavailable,
		"resource_exhausted": web.ErrUnavailable,
		"internal":           nil,
	} {
		err := dlqError(&pipeline.DeadLettered{Class: class, Message: "boom"})
		if want == nil {
			if errors.Is(err, web.ErrInvalid) || errors.Is(err, web.ErrUnavailable) {
				t.Errorf("class %s: %v maps to a client or availability error", class, err)
			}
			continue
		}
		if !errors.Is(err, want) {
			t.Errorf("class %s: %v is not %v", class, err, want)
		}
	}
}
