package tfserving

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
)

// Defaults of Config, filled in by DefaultConfig only.
const (
	DefaultTimeout = 5 * time.Second
	// DefaultMaxRecvMsgSize is far above gRPC's 4 MiB default, which a batch
	// of a few thousand rows of a wide output already exceeds; TF Serving
	// itself accepts messages up to 2 GiB.
	DefaultMaxRecvMsgSize = 256 << 20
)

// Config of a Client. Start from DefaultConfig: Dial and Validate fill in
// nothing.
type Config struct {
	// Address is host:port of TF Serving's gRPC port (8500 by default there),
	// or any gRPC target grpc.NewClient accepts (dns:///, unix://...).
	Address string
	// Timeout bounds each call whose context has no deadline of its own.
	Timeout time.Duration
	// MaxRecvMsgSize is the largest response the client accepts, in bytes.
	MaxRecvMsgSize int
	// TLS enables TLS; nil means plaintext, as TF Serving serves by default.
	TLS *tls.Config
	// DialOptions are appended after the client's own, so they can override
	// them (interceptors, keepalive, a custom dialer in tests).
	DialOptions []grpc.DialOption
}

// DefaultConfig returns the defaults for a client of address.
func DefaultConfig(address string) Config {
	return Config{Address: address, Timeout: DefaultTimeout, MaxRecvMsgSize: DefaultMaxRecvMsgSize}
}

// Validate reports the first invalid setting, named as in Config.
func (c Config) Validate() error {
	switch {
	case c.Address == "":
		return errors.New("tfserving: Address is empty")
	case c.Timeout <= 0:
		return fmt.Errorf("tfserving: Timeout %v must be positive", c.Timeout)
	case c.MaxRecvMsgSize <= 0 || c.MaxRecvMsgSize > math.MaxInt32:
		return fmt.Errorf("tfserving: MaxRecvMsgSize %d is outside 1..%d", c.MaxRecvMsgSize, math.MaxInt32)
	}
	return nil
}

// Client calls one TF Serving endpoint (or anything serving its API, such as
// infergate's embedded model server). It is safe for concurrent use; gRPC
// multiplexes calls over one connection. Errors keep their gRPC status
// codes: status.Code(err) classifies them even though they are wrapped.
type Client struct {
	cfg    Config
	conn   *grpc.ClientConn
	pred   servingpb.PredictionServiceClient
	models servingpb.ModelServiceClient
}

// Dial creates a client without connecting: the connection is made on the
// first call and re-made after failures, so Dial succeeds while the server is
// still starting (TF Serving opens its port only once models are loaded).
func Dial(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cfg.MaxRecvMsgSize)),
	}, cfg.DialOptions...)
	conn, err := grpc.NewClient(cfg.Address, opts...)
	if err != nil {
		return nil, fmt.Errorf("tfserving: client for %s: %w", cfg.Address, err)
	}
	return &Client{
		cfg:    cfg,
		conn:   conn,
		pred:   servingpb.NewPredictionServiceClient(conn),
		models: servingpb.NewModelServiceClient(conn),
	}, nil
}

// Address is the target the client was dialed with.
func (c *Client) Address() string { return c.cfg.Address }

// Prediction returns the raw PredictionService stub on the client's
// connection, for calls this package does not wrap (Classify, Regress).
func (c *Client) Prediction() servingpb.PredictionServiceClient { return c.pred }

// Models returns the raw ModelService stub.
func (c *Client) Models() servingpb.ModelServiceClient { return c.models }

// Close closes the connection; calls in flight fail with CANCELLED.
func (c *Client) Close() error { return c.conn.Close() }

// withDeadline gives ctx the configured timeout unless it has a deadline.
func (c *Client) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.cfg.Timeout)
}

// invalid makes a local INVALID_ARGUMENT error, so callers classify a request
// the client refuses the same way as one the server refuses.
func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// Predict sends inputs to the model and decodes every output. Numeric
// inputs travel as tensor_content (one memmove instead of one varint or
// fixed field per value); outputs are read in either encoding. The result's
// Version is the version that served the call, which may differ from the one
// asked for when a newer version failed to load.
func (c *Client) Predict(ctx context.Context, spec model.Spec, inputs map[string]*tensor.Tensor) (*model.Result, error) {
	if err := ValidateSpec(spec); err != nil {
		return nil, invalid("predict: %v", err)
	}
	req := &servingpb.PredictRequest{ModelSpec: SpecToProto(spec), Inputs: make(map[string]*tfpb.TensorProto, len(inputs))}
	for name, t := range inputs {
		p, err := tensor.ToProto(t, true)
		if err != nil {
			return nil, invalid("predict %s: input %q: %v", spec.Name, name, err)
		}
		req.Inputs[name] = p
	}
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	resp, err := c.pred.Predict(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("predict %s at %s: %w", spec.Name, c.cfg.Address, err)
	}
	res := &model.Result{
		Outputs: make(map[string]*tensor.Tensor, len(resp.Outputs)),
		Version: resp.GetModelSpec().GetVersion().GetValue(),
	}
	for name, p := range resp.Outputs {
		t, err := tensor.FromProto(p)
		if err != nil {
			// The server answered something no TF Serving would: a bug on
			// its side, not a bad request.
			return nil, status.Errorf(codes.Internal, "predict %s at %s: output %q: %v", spec.Name, c.cfg.Address, name, err)
		}
		res.Outputs[name] = t
	}
	return res, nil
}

// Metadata fetches the model's signatures (GetModelMetadata with
// metadata_field "signature_def"). Dims of unknown size stay -1.
func (c *Client) Metadata(ctx context.Context, spec model.Spec) (*model.Metadata, error) {
	if err := ValidateSpec(spec); err != nil {
		return nil, invalid("metadata: %v", err)
	}
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	resp, err := c.pred.GetModelMetadata(ctx, &servingpb.GetModelMetadataRequest{
		ModelSpec:     SpecToProto(spec),
		MetadataField: []string{SignatureDefField},
	})
	if err != nil {
		return nil, fmt.Errorf("metadata of %s at %s: %w", spec.Name, c.cfg.Address, err)
	}
	md, err := MetadataFromProto(resp)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "metadata of %s at %s: %v", spec.Name, c.cfg.Address, err)
	}
	if md.Name == "" {
		md.Name = spec.Name
	}
	return md, nil
}

// VersionStatus is one entry of GetModelStatus.
type VersionStatus struct {
	Version int64
	// State is TF's state name: UNKNOWN, START, LOADING, AVAILABLE,
	// UNLOADING or END. A failed load shows END with a non-OK ErrorCode.
	State        string
	ErrorCode    codes.Code
	ErrorMessage string
}

// Available reports whether the version serves requests.
func (v VersionStatus) Available() bool {
	return v.State == servingpb.ModelVersionStatus_AVAILABLE.String()
}

// Status lists the model's versions as the server reports them (highest
// first); version 0 asks for all of them.
func (c *Client) Status(ctx context.Context, name string, version int64) ([]VersionStatus, error) {
	if err := ValidateSpec(model.Spec{Name: name, Version: version}); err != nil {
		return nil, invalid("status: %v", err)
	}
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	resp, err := c.models.GetModelStatus(ctx, &servingpb.GetModelStatusRequest{
		ModelSpec: SpecToProto(model.Spec{Name: name, Version: version}),
	})
	if err != nil {
		return nil, fmt.Errorf("status of %s at %s: %w", name, c.cfg.Address, err)
	}
	out := make([]VersionStatus, len(resp.ModelVersionStatus))
	for i, mvs := range resp.ModelVersionStatus {
		out[i] = VersionStatus{
			Version:      mvs.GetVersion(),
			State:        mvs.GetState().String(),
			ErrorCode:    codes.Code(mvs.GetStatus().GetErrorCode()),
			ErrorMessage: mvs.GetStatus().GetErrorMessage(),
		}
	}
	return out, nil
}

// Reload replaces the server's model configuration
// (HandleReloadConfigRequest). TF answers a rejected config with gRPC OK and
// a non-OK StatusProto; Reload turns that into an error with its code.
func (c *Client) Reload(ctx context.Context, cfg *servingpb.ModelServerConfig) error {
	if cfg == nil {
		return invalid("reload: nil config")
	}
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	resp, err := c.models.HandleReloadConfigRequest(ctx, &servingpb.ReloadConfigRequest{Config: cfg})
	if err != nil {
		return fmt.Errorf("reload config at %s: %w", c.cfg.Address, err)
	}
	if st := resp.GetStatus(); st.GetErrorCode() != 0 {
		return fmt.Errorf("reload config at %s: %w", c.cfg.Address,
			status.Error(codes.Code(st.GetErrorCode()), st.GetErrorMessage()))
	}
	return nil
}
