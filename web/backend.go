package web

import (
	"context"
	"errors"
	"time"

	"github.com/infergate/infergate/store"
)

// Backend is what the dashboard and admin API need from the running appliance. The appliance
// implements it over the broker, pipeline and model server; web reads the DLQ store and the
// Prometheus registry itself, so this stays small.
//
// Errors: wrap ErrNotFound, ErrInvalid, ErrConflict, ErrUnavailable or ErrUnsupported (or
// return gRPC status errors, as the model server and TF Serving client do) and the API maps
// them to 404, 400, 409, 503 and 501; anything else is a 500.
type Backend interface {
	// Status describes the broker, model server and pipeline. Web adds the store and the
	// versions it knows itself.
	Status(ctx context.Context) (*Status, error)
	// Ready returns nil when the broker, model server and pipeline can serve (for /readyz).
	Ready() error

	// PausePipeline stops consuming requests (in-flight batches finish); ResumePipeline undoes it.
	PausePipeline(ctx context.Context) error
	ResumePipeline(ctx context.Context) error

	// Topics lists the requests, results and DLQ topics with per-partition offsets, and the
	// consumer group's committed offsets and lag on the requests topic.
	Topics(ctx context.Context) ([]Topic, error)

	// Models lists the served models with their versions, states and labels.
	Models(ctx context.Context) ([]Model, error)
	// UploadModel adds an ONNX model version (version 0: one above the highest) and returns
	// the version it was stored as. Loading continues in the background; Models reports it.
	// file is the uploaded model, size bytes, streamed to a temporary file in
	// Config.UploadDir: the backend may move it into place; web removes it if it is still
	// there afterwards.
	UploadModel(ctx context.Context, name string, version int64, file string, size int64) (int64, error)
	// SetLabel points a version label (e.g. "stable") at a version. A version that does not
	// exist is ErrInvalid; an unknown model is ErrNotFound.
	SetLabel(ctx context.Context, name, label string, version int64) error
	// ReloadModels rescans the model repository (embedded) or re-sends the model config (sidecar).
	ReloadModels(ctx context.Context) error

	// Replay produces the records' original key, value and headers to the requests topic and
	// returns once the broker acknowledged them. Web then marks them replayed in the store.
	Replay(ctx context.Context, recs []*store.Record) error
	// SendTestRequest produces one request to the requests topic and waits for its result,
	// returning the result record's value. A request that is dead-lettered returns an error
	// saying why (wrap ErrInvalid for decode/validation/model classes). ctx bounds the wait.
	SendTestRequest(ctx context.Context, key, value []byte, headers []store.Header) ([]byte, error)

	// Sidecar reports the supervised tensorflow_model_server or the external TF Serving
	// endpoints; ok is false with the embedded model server.
	Sidecar(ctx context.Context) (status *SidecarStatus, ok bool)

	// Ingress reports the edge ingress (MQTT / NATS devices): listeners, connected clients,
	// the durable inbox and the recent rejects; ok is false when the ingress is off. Its rates
	// come from the infergate_ingress_* metrics, like every other rate of the dashboard.
	Ingress(ctx context.Context) (status *IngressStatus, ok bool)

	// Settings returns the effective configuration with secrets already redacted; it is
	// served as JSON.
	Settings() any
}

// Errors a Backend wraps so the API answers with the right status code.
var (
	ErrNotFound    = errors.New("not found")              // 404
	ErrInvalid     = errors.New("invalid argument")       // 400
	ErrConflict    = errors.New("conflict")               // 409
	ErrUnavailable = errors.New("unavailable")            // 503
	ErrUnsupported = errors.New("not supported here")     // 501, e.g. uploading to an external TF Serving fleet
	errTooLarge    = errors.New("request body too large") // 413
)

// Component states used in Status.
const (
	StateOK       = "ok"
	StateStarting = "starting"
	StateDegraded = "degraded"
	StateDown     = "down"
	// Pipeline-only states.
	StatePaused      = "paused"
	StateCircuitOpen = "circuit_open"
)

// Status is GET /api/v1/status.
type Status struct {
	// Version is the infergate build; web fills it from Config.Version when empty.
	Version   string    `json:"version"`
	GoVersion string    `json:"go_version"` // filled by web
	StartedAt time.Time `json:"started_at"`
	// Delivery is "at-least-once" or "exactly-once".
	Delivery    string    `json:"delivery,omitempty"`
	Broker      Component `json:"broker"`
	ModelServer Component `json:"model_server"`
	Pipeline    Component `json:"pipeline"`
	Store       Component `json:"store"` // filled by web from store.Stats
	// Member is this instance's place in the consumer group.
	Member *Membership `json:"member,omitempty"`
	// Warnings says what data was lost (corruption found in the store or the broker), one
	// sentence each; the dashboard shows them and `infergate dlq` prints them.
	Warnings []string `json:"warnings,omitempty"`
}

// Membership is an instance's place in its consumer group.
type Membership struct {
	Group      string `json:"group"`
	MemberID   string `json:"member_id,omitempty"` // "" until it joined
	InstanceID string `json:"instance_id,omitempty"`
	Generation int32  `json:"generation"`
	// NotReady is why the pipeline cannot make progress, "" when it can.
	NotReady string `json:"not_ready,omitempty"`
}

// Component is one part of the appliance. State is one of the State* constants.
type Component struct {
	// Mode: broker "embedded"|"external", model server "embedded"|"sidecar"|"external".
	Mode    string `json:"mode,omitempty"`
	State   string `json:"state"`
	Address string `json:"address,omitempty"`
	Version string `json:"version,omitempty"`
	// Detail explains a state other than ok, or adds a short fact ("6 partitions").
	Detail string `json:"detail,omitempty"`
}

// Topic roles.
const (
	RoleRequests = "requests"
	RoleResults  = "results"
	RoleDLQ      = "dlq"
)

// Topic is one topic the appliance uses.
type Topic struct {
	Name  string `json:"name"`
	Role  string `json:"role"`            // RoleRequests, RoleResults, RoleDLQ
	Group string `json:"group,omitempty"` // consumer group whose lag is reported (requests topic)
	// Shared: several instances share Group (attached to an external
	// cluster), so /metrics labels the lag with the group for a group-level
	// sum; on an edge box with its own broker the label stays empty.
	Shared     bool        `json:"shared,omitempty"`
	Partitions []Partition `json:"partitions"`
}

// Partition offsets. Committed and Lag are -1 where there is no consumer group or no commit.
type Partition struct {
	Partition   int32 `json:"partition"`
	Leader      int32 `json:"leader"`
	StartOffset int64 `json:"start_offset"`
	EndOffset   int64 `json:"end_offset"` // high watermark
	Committed   int64 `json:"committed"`
	Lag         int64 `json:"lag"`
	// Owner is the group member consuming the partition (its instance id,
	// else its member id), "" when none is assigned it.
	Owner string `json:"owner,omitempty"`
	// ReportedElsewhere: another instance of the group exports this
	// partition's lag on /metrics (its owner), so a sum over instances
	// counts each partition once.
	ReportedElsewhere bool `json:"reported_elsewhere,omitempty"`
}

// Model is one served model.
type Model struct {
	Name   string           `json:"name"`
	Labels map[string]int64 `json:"labels,omitempty"`
	// Serving is the version the pipeline sends requests that name none to
	// when it is not the latest (after a rollback, or during a rollout: the
	// stable version); 0 means the latest available.
	Serving  int64          `json:"serving_version,omitempty"`
	Versions []ModelVersion `json:"versions"`
}

// Model version states as TF Serving reports them.
const (
	ModelStart       = "START"
	ModelLoading     = "LOADING"
	ModelAvailable   = "AVAILABLE"
	ModelUnloading   = "UNLOADING"
	ModelEnd         = "END"
	ModelUnavailable = "UNAVAILABLE" // not a TF Serving state: the model server cannot be reached
)

// ModelVersion is one version of a model.
type ModelVersion struct {
	Version int64  `json:"version"`
	State   string `json:"state"`
	Error   string `json:"error,omitempty"`
	// Held says why a pin or a rollout needs the version loaded ("pinned",
	// "stable of rollout demo-…"), and whether the model server keeps it
	// loaded beyond its version policy; "" when nothing needs it.
	Held string `json:"held,omitempty"`
}

// SidecarStatus is GET /api/v1/sidecar in sidecar or external mode.
type SidecarStatus struct {
	Mode       string     `json:"mode"`  // "sidecar" or "external"
	State      string     `json:"state"` // e.g. "running", "starting", "backoff", "stopped"
	PID        int        `json:"pid,omitempty"`
	Binary     string     `json:"binary,omitempty"`
	Version    string     `json:"version,omitempty"`
	StartedAt  time.Time  `json:"started_at,omitzero"`
	Restarts   int        `json:"restarts"`
	LastExit   string     `json:"last_exit,omitempty"` // e.g. "exit status 1", "signal: killed"
	LastExitAt time.Time  `json:"last_exit_at,omitzero"`
	Ready      []string   `json:"ready_models,omitempty"`
	Endpoints  []Endpoint `json:"endpoints,omitempty"`
	LogTail    []string   `json:"log_tail,omitempty"`
}

// Endpoint is one TF Serving address and whether its last health check passed.
type Endpoint struct {
	Address   string    `json:"address"`
	Healthy   bool      `json:"healthy"`
	Detail    string    `json:"detail,omitempty"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
}

// IngressStatus is GET /api/v1/ingress when the ingress is on.
type IngressStatus struct {
	// Server is the NATS server devices connect to, e.g. "nats-server 2.15.3 (embedded)".
	Server    string            `json:"server"`
	Listeners []IngressListener `json:"listeners"`
	// External: attached to a NATS server run elsewhere, whose listeners, clients and rejects
	// are not known here (Listeners empty, Clients nil).
	External bool `json:"external"`
	// Anonymous: devices connect without credentials (loopback listeners only).
	Anonymous bool `json:"anonymous"`
	AnswerQoS int  `json:"answer_qos"`
	// Clients are the connected devices by protocol ("mqtt", "nats"); nil when unknown.
	Clients map[string]int `json:"clients"`
	// InboxPending are durable requests waiting in the inbox; AckPending are on their way to
	// Kafka.
	InboxPending uint64 `json:"inbox_pending"`
	AckPending   int    `json:"ack_pending"`
	// Rejects are the most recent refused connections, publishes and subscriptions, newest
	// first.
	Rejects []IngressReject `json:"rejects"`
}

// IngressListener is one address devices connect to.
type IngressListener struct {
	Protocol string `json:"protocol"` // mqtt or nats
	Address  string `json:"address"`
	TLS      bool   `json:"tls"`
}

// IngressReject is one refused connection, publish or subscription.
type IngressReject struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"` // credentials, permission, subject
	Client string    `json:"client"`
	Detail string    `json:"detail"`
}
