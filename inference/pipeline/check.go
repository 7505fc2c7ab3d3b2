package pipeline

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/recordcodec"
)

// ErrNoMetadata wraps the error of a CheckRequest whose model's metadata
// could not be read (model server unreachable): the request may be fine.
var ErrNoMetadata = errors.New("cannot read the model's signature")

// CheckRequest tells, before a request is sent, whether the pipeline would
// dead-letter it at decoding: the same parser and the same signature checks.
// headerModel is the record's "model" header ("" if none); defaultModel the
// appliance's pipeline.default_model. meta reads a model's metadata (a
// tfserving.Client's Metadata); nil checks only the request format. It
// returns the model the request names and, for a bad request, an error whose
// Class is decode or validation.
func CheckRequest(ctx context.Context, value []byte, headerModel, defaultModel string,
	meta func(context.Context, model.Spec) (*model.Metadata, error)) (string, error) {
	env, err := recordcodec.ParseEnvelope(value)
	if err != nil {
		return "", err
	}
	name := env.Model
	if name == "" {
		name = headerModel
	}
	if name == "" {
		name = defaultModel
	}
	key := metaKey{name: name, version: env.Version, label: env.Label}
	if meta == nil {
		return key.String(), nil
	}
	md, err := meta(ctx, key.spec())
	if err != nil {
		switch status.Code(err) {
		case codes.NotFound, codes.InvalidArgument, codes.FailedPrecondition:
			return key.String(), validationErr("model %s: %s", key, status.Convert(err).Message())
		}
		return key.String(), fmt.Errorf("%w of %s: %w", ErrNoMetadata, key, err)
	}
	e := &metaEntry{key: key, meta: md}
	si, err := e.signature(signatureName(env.Signature, md), "")
	if err != nil {
		return key.String(), err
	}
	_, _, err = recordcodec.DecodeInputs(&env, si.Signature)
	return key.String(), err
}

// Class is the error class (ClassDecode, ClassValidation, …) attached to
// err, "" if none.
func Class(err error) string {
	var ce *classError
	if errors.As(err, &ce) {
		return ce.Class
	}
	return ""
}
