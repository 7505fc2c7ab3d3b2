// Package field lets a package's Config.Validate say which field is at fault
// without knowing how that field is set. An Error carries a pointer to the
// field; the appliance, whose settings table binds every config key, flag and
// environment variable to a field pointer, turns it into
// "key (--flag, ENV): message" (appliance/settings.go). A caller that builds
// a Config in Go sees the field's Go name instead.
package field

import (
	"errors"
	"fmt"
)

// Error is a validation error about one field of a Config.
type Error struct {
	// Ptr points at the field at fault, inside the Config that was
	// validated (so Validate must be called on the caller's Config, not a
	// copy, for the pointer to mean something to the caller).
	Ptr any
	// Name is the field's name in its package, e.g. "MaxBatchSize".
	Name string
	Err  error
}

func (e *Error) Error() string { return e.Name + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Errors collects the field errors of one Validate call.
type Errors struct{ errs []error }

// Add records that the field ptr points at, named name, is invalid.
func (l *Errors) Add(ptr any, name, format string, args ...any) {
	l.errs = append(l.errs, &Error{Ptr: ptr, Name: name, Err: fmt.Errorf(format, args...)})
}

// Err is every error added, joined, or nil.
func (l *Errors) Err() error { return errors.Join(l.errs...) }

// All flattens err (joined errors included) into its field errors and the
// rest, in order.
func All(err error) (fields []*Error, other []error) {
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if fe, ok := err.(*Error); ok {
			fields = append(fields, fe)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		other = append(other, err)
	}
	walk(err)
	return fields, other
}
