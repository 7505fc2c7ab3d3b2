package appliance

import (
	"errors"
	"testing"

	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/web"
)

// A dead-lettered test request answers with the status its class deserves:
// the request's own fault is 400, the model server's 503, anything else 500.
// Every class in pipeline.Classes must be decided here, so a new class
// fails this test until dlqError (appliance/web.go) says whose fault it is.
func TestDLQErrorKinds(t *testing.T) {
	kinds := map[string]error{
		pipeline.ClassDecode:      web.ErrInvalid,
		pipeline.ClassValidation:  web.ErrInvalid,
		pipeline.ClassModel:       web.ErrInvalid,
		pipeline.ClassUnavailable: web.ErrUnavailable,
		pipeline.ClassTimeout:     web.ErrUnavailable,
		pipeline.ClassExhausted:   web.ErrUnavailable,
		pipeline.ClassInternal:    nil,
		// The model answered; the results topic could not take the answer.
		pipeline.ClassResultTooLarge: nil,
	}
	for _, c := range pipeline.Classes {
		if _, ok := kinds[c]; !ok {
			t.Errorf("class %s (pipeline.Classes) has no HTTP error kind here: decide it in dlqError", c)
		}
	}
	for class, want := range kinds {
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
