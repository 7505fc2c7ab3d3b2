// Package rest serves TensorFlow Serving's REST API (the one on
// tensorflow_model_server's --rest_api_port) over the gRPC service
// interfaces, so any implementation of PredictionService and ModelService,
// in-process or not, gets the REST API with TF's paths, JSON formats, error
// bodies and HTTP status codes.
package rest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
)

// MaxBodyBytes bounds a request body. TF Serving has no limit, but a JSON
// body expands several times in memory while it is converted.
const MaxBodyBytes = 64 << 20

// maxBodyBytes is MaxBodyBytes, lowered by tests.
var maxBodyBytes int64 = MaxBodyBytes

// sigTTL bounds how long a cached signature is trusted without a Predict
// confirming its version; a rollover to a version with another signature is
// noticed at the latest then.
const sigTTL = time.Minute

// maxCached bounds the signature cache; entries exist only for models that
// answered, so this is reached only with many models and labels.
const maxCached = 1024

type handler struct {
	pred   servingpb.PredictionServiceServer
	models servingpb.ModelServiceServer
	log    *slog.Logger

	// Request bounds (WithLimits); zero/nil: none.
	maxValues int64
	tooMany   func(n int64) error
	admit     AdmitFunc

	mu   sync.Mutex
	sigs map[specKey]cachedMetadata
}

type specKey struct {
	name    string
	version int64
	label   string
}

type cachedMetadata struct {
	md      *model.Metadata
	fetched time.Time
}

// NewHandler returns TF Serving's REST API over the two services:
//
//	POST /v1/models/{name}[/versions/{v} | /labels/{l}]:predict|:classify|:regress
//	GET  /v1/models/{name}[/versions/{v} | /labels/{l}]          (model status)
//	GET  /v1/models/{name}[/versions/{v} | /labels/{l}]/metadata
//
// JSON values of :predict requests take their dtype from the signature,
// fetched with GetModelMetadata and cached per model, version and label.
// Errors are {"error": "message"} with TF's mapping of gRPC codes to HTTP
// statuses. The handler sets no timeout: wrap the request context for that.
func NewHandler(pred servingpb.PredictionServiceServer, models servingpb.ModelServiceServer, logger *slog.Logger, opts ...Option) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{pred: pred, models: models, log: logger, sigs: make(map[specKey]cachedMetadata)}
	for _, o := range opts {
		o(h)
	}
	return h
}

// Option configures NewHandler.
type Option func(*handler)

// AdmitFunc reserves an estimated number of bytes of memory for a request
// until release is called, waiting (until ctx ends) for room. The returned
// context is passed on to the services.
type AdmitFunc func(ctx context.Context, bytes int64) (_ context.Context, release func(), _ error)

// WithLimits bounds what one request body may make the handler allocate.
// A body holding more than maxValues JSON scalars (numbers, strings, bools,
// nulls; object keys not counted) is refused before it is parsed, with the
// error tooMany(n) returns (0 = no bound). admit, if not nil, is called
// with an estimate of the memory parsing and converting the body takes,
// before it is parsed.
func WithLimits(maxValues int64, tooMany func(n int64) error, admit AdmitFunc) Option {
	return func(h *handler) { h.maxValues, h.tooMany, h.admit = maxValues, tooMany, admit }
}

// route is a parsed /v1/models/... path.
type route struct {
	key    specKey
	hasVer bool
	action string // predict, classify, regress, status, metadata
}

func (r route) spec(signature string) *servingpb.ModelSpec {
	s := &servingpb.ModelSpec{Name: r.key.name, SignatureName: signature}
	if r.hasVer {
		// Version 0 in a URL asks for version 0, not for the latest, so
		// this does not go through SpecToProto.
		s.VersionChoice = &servingpb.ModelSpec_Version{Version: wrapperspb.Int64(r.key.version)}
	} else if r.key.label != "" {
		s.VersionChoice = &servingpb.ModelSpec_VersionLabel{VersionLabel: r.key.label}
	}
	return s
}

func malformed(r *http.Request) error {
	return status.Errorf(codes.InvalidArgument, "Malformed request: %s %s", r.Method, r.URL.Path)
}

// parseRoute matches TF's URL patterns. The name and label may hold any
// character but '/' and ':'; a version is decimal digits.
func parseRoute(r *http.Request) (route, error) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/models/")
	if !ok {
		return route{}, malformed(r)
	}
	var rt route
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		rt.action = rest[i+1:]
		rest = rest[:i]
		switch rt.action {
		case "predict", "classify", "regress":
		default:
			return route{}, malformed(r)
		}
		if r.Method != http.MethodPost {
			return route{}, malformed(r)
		}
	} else {
		rt.action = "status"
		if after, ok := strings.CutSuffix(rest, "/metadata"); ok {
			rt.action, rest = "metadata", after
		}
		if r.Method != http.MethodGet {
			return route{}, malformed(r)
		}
	}
	segs := strings.Split(rest, "/")
	rt.key.name = segs[0]
	if rt.key.name == "" || strings.Contains(rt.key.name, ":") {
		return route{}, malformed(r)
	}
	hasLabel := false
	for i := 1; i < len(segs); i += 2 {
		if i+1 >= len(segs) || segs[i+1] == "" || strings.Contains(segs[i+1], ":") {
			return route{}, malformed(r)
		}
		switch val := segs[i+1]; segs[i] {
		case "versions":
			v, err := strconv.ParseInt(val, 10, 64)
			if rt.hasVer || err != nil || v < 0 || val[0] == '+' {
				return route{}, malformed(r)
			}
			rt.key.version, rt.hasVer = v, true
		case "labels":
			if hasLabel {
				return route{}, malformed(r)
			}
			rt.key.label, hasLabel = val, true
		default:
			return route{}, malformed(r)
		}
	}
	if rt.hasVer && hasLabel {
		return route{}, status.Errorf(codes.InvalidArgument,
			"Both model version (%d) and model version label (%s) cannot be supplied.", rt.key.version, rt.key.label)
	}
	return rt, nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// TF's server hands only /v1/ paths to the API; everything else is a
	// plain 404.
	if !strings.HasPrefix(r.URL.Path, "/v1/") {
		writeJSON(w, http.StatusNotFound, errorBody(fmt.Sprintf("Not found: %s %s", r.Method, r.URL.Path)))
		return
	}
	rt, err := parseRoute(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var body []byte
	switch rt.action {
	case "status":
		body, err = h.status(r.Context(), rt)
	case "metadata":
		body, err = h.metadata(r.Context(), rt)
	default:
		var in []byte
		in, err = h.readBody(w, r)
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorBody(fmt.Sprintf("request body exceeds %d bytes", tooBig.Limit)))
			return
		}
		if _, isStatus := status.FromError(err); err != nil && isStatus {
			break // waiting for admission ended with the request's deadline
		}
		if err != nil {
			err = status.Errorf(codes.InvalidArgument, "reading request body: %v", err)
			break
		}
		ctx := r.Context()
		var release func()
		if ctx, release, err = h.bound(ctx, in); err != nil {
			break
		}
		switch rt.action {
		case "predict":
			body, err = h.predict(ctx, rt, in)
		case "classify":
			body, err = h.classify(ctx, rt, in)
		case "regress":
			body, err = h.regress(ctx, rt, in)
		}
		release()
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// readBody reads at most maxBodyBytes. With admission, the announced
// length is admitted first and then read into one buffer of that size
// (io.ReadAll would grow it by doubling, leaving twice the body in garbage);
// a client that announces a large body and sends it slowly holds budget, not
// unbounded memory. Without admission, or without a length, the buffer grows
// as the bytes arrive.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > maxBodyBytes {
		// Announced too large: refuse before reading any of it.
		return nil, &http.MaxBytesError{Limit: maxBodyBytes}
	}
	body := http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if n := r.ContentLength; n > 0 && h.admit != nil {
		_, release, err := h.admit(r.Context(), n)
		if err != nil {
			return nil, err
		}
		defer release() // bound admits the body again, with its parse
		buf := make([]byte, n)
		if _, err := io.ReadFull(body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(body)
}

// bound applies WithLimits to a body before it is parsed.
func (h *handler) bound(ctx context.Context, body []byte) (context.Context, func(), error) {
	if h.maxValues <= 0 && h.admit == nil {
		return ctx, func() {}, nil
	}
	scalars, containers := countJSON(body)
	// Lists count too: two million one-value instances are four million
	// parse-tree values (679 MB in the soak) though only half are scalars.
	if h.maxValues > 0 && scalars > h.maxValues {
		return ctx, nil, h.tooMany(scalars)
	}
	if h.maxValues > 0 && scalars+containers > h.maxValues {
		return ctx, nil, h.tooMany(scalars + containers)
	}
	if h.admit == nil {
		return ctx, func() {}, nil
	}
	// The parse tree holds one jvalue per value; each scalar then becomes a
	// tensor element, a TensorProto element and a decoded element again.
	est := int64(len(body)) + (scalars+containers)*int64(unsafe.Sizeof(jvalue{})) + scalars*3*8
	return h.admit(ctx, est)
}

// HTTPStatus is TF Serving's mapping of a gRPC code to an HTTP status.
func HTTPStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499 // client closed request, as TF Serving answers
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError // Unknown, Internal, DataLoss
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		err = status.FromContextError(err).Err()
	}
	st := status.Convert(err)
	code := HTTPStatus(st.Code())
	level := slog.LevelDebug
	if code >= 500 {
		level = slog.LevelWarn
	}
	h.log.Log(r.Context(), level, "rest request failed", "method", r.Method, "path", r.URL.Path,
		"code", st.Code().String(), "http_status", code, "err", st.Message())
	writeJSON(w, code, errorBody(st.Message()))
}

func errorBody(msg string) []byte {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return b
}

func writeJSON(w http.ResponseWriter, code int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// protoJSON prints like TF Serving's REST API: proto field names, and every
// field even when it has its zero value.
var protoJSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

func (h *handler) status(ctx context.Context, rt route) ([]byte, error) {
	resp, err := h.models.GetModelStatus(ctx, &servingpb.GetModelStatusRequest{ModelSpec: rt.spec("")})
	if err != nil {
		return nil, err
	}
	return protoJSON.Marshal(resp)
}

// metadata answers {"model_spec": {...}, "metadata": {"signature_def": {...}}}:
// TF prints the SignatureDefMap inside the Any without an "@type" field.
func (h *handler) metadata(ctx context.Context, rt route) ([]byte, error) {
	resp, err := h.pred.GetModelMetadata(ctx, &servingpb.GetModelMetadataRequest{
		ModelSpec: rt.spec(""), MetadataField: []string{tfserving.SignatureDefField},
	})
	if err != nil {
		return nil, err
	}
	spec, err := protoJSON.Marshal(resp.GetModelSpec())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "model_spec to JSON: %v", err)
	}
	md := make(map[string]json.RawMessage, len(resp.GetMetadata()))
	for field, a := range resp.GetMetadata() {
		msg, err := a.UnmarshalNew()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "metadata %q: %v", field, err)
		}
		if md[field], err = protoJSON.Marshal(msg); err != nil {
			return nil, status.Errorf(codes.Internal, "metadata %q to JSON: %v", field, err)
		}
	}
	return json.Marshal(struct {
		ModelSpec json.RawMessage            `json:"model_spec"`
		Metadata  map[string]json.RawMessage `json:"metadata"`
	}{spec, md})
}

// signature returns the named signature of the model the route selects,
// from the cache when it is fresh.
func (h *handler) signature(ctx context.Context, rt route, name string) (*model.Signature, int64, error) {
	h.mu.Lock()
	c, ok := h.sigs[rt.key]
	h.mu.Unlock()
	if !ok || time.Since(c.fetched) > sigTTL {
		resp, err := h.pred.GetModelMetadata(ctx, &servingpb.GetModelMetadataRequest{
			ModelSpec: rt.spec(""), MetadataField: []string{tfserving.SignatureDefField},
		})
		if err != nil {
			return nil, 0, err
		}
		md, err := tfserving.MetadataFromProto(resp)
		if err != nil {
			return nil, 0, status.Errorf(codes.Internal, "metadata of %s: %v", rt.key.name, err)
		}
		c = cachedMetadata{md: md, fetched: time.Now()}
		h.mu.Lock()
		if len(h.sigs) >= maxCached {
			clear(h.sigs)
		}
		h.sigs[rt.key] = c
		h.mu.Unlock()
	}
	if name == "" {
		name = model.DefaultSignature
	}
	sig, ok := c.md.Signatures[name]
	if !ok {
		return nil, 0, status.Errorf(codes.FailedPrecondition, "Serving signature key \"%s\" not found.", name)
	}
	return sig, c.md.Version, nil
}

func (h *handler) forget(key specKey) {
	h.mu.Lock()
	delete(h.sigs, key)
	h.mu.Unlock()
}

func (h *handler) predict(ctx context.Context, rt route, body []byte) ([]byte, error) {
	var sigVersion int64
	req, err := decodePredict(body, func(name string) (*model.Signature, error) {
		sig, v, err := h.signature(ctx, rt, name)
		sigVersion = v
		return sig, err
	})
	if err != nil {
		return nil, err
	}
	preq := &servingpb.PredictRequest{
		ModelSpec: rt.spec(req.signature),
		Inputs:    make(map[string]*tfpb.TensorProto, len(req.inputs)),
	}
	for name, t := range req.inputs {
		if preq.Inputs[name], err = tensor.ToProto(t, true); err != nil {
			return nil, status.Errorf(codes.Internal, "input %q: %v", name, err)
		}
	}
	resp, err := h.pred.Predict(ctx, preq)
	if err != nil {
		if status.Code(err) == codes.NotFound {
			h.forget(rt.key)
		}
		return nil, err
	}
	if v := resp.GetModelSpec().GetVersion(); v != nil && v.GetValue() != sigVersion {
		// Another version answered than the one whose signature typed the
		// request (a rollover or a moved label): refetch next time.
		h.forget(rt.key)
	}
	outputs := make(map[string]*tensor.Tensor, len(resp.GetOutputs()))
	for name, p := range resp.GetOutputs() {
		if outputs[name], err = tensor.FromProto(p); err != nil {
			return nil, status.Errorf(codes.Internal, "output %q: %v", name, err)
		}
	}
	return encodePredict(req.row, outputs)
}

func (h *handler) classify(ctx context.Context, rt route, body []byte) ([]byte, error) {
	sig, input, err := decodeExamples(body)
	if err != nil {
		return nil, err
	}
	resp, err := h.pred.Classify(ctx, &servingpb.ClassificationRequest{ModelSpec: rt.spec(sig), Input: input})
	if err != nil {
		return nil, err
	}
	return encodeClassification(resp.GetResult()), nil
}

func (h *handler) regress(ctx context.Context, rt route, body []byte) ([]byte, error) {
	sig, input, err := decodeExamples(body)
	if err != nil {
		return nil, err
	}
	resp, err := h.pred.Regress(ctx, &servingpb.RegressionRequest{ModelSpec: rt.spec(sig), Input: input})
	if err != nil {
		return nil, err
	}
	return encodeRegression(resp.GetResult()), nil
}
