package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// EndpointsFile, in the data dir, says where the running appliance listens,
// so that `infergate produce`, `consume` and `dlq` find it with no flags
// even when it runs on other ports than the defaults (the addresses may come
// from flags or a config file the CLI does not see); the admin API's URL is
// in AdminURLFile. It is written once the broker and the model server
// listen and removed when the appliance stops; a file left by a killed
// appliance names a PID that no longer runs.
const EndpointsFile = "endpoints.json"

// Endpoints is the content of EndpointsFile.
type Endpoints struct {
	PID int `json:"pid"`
	// Brokers are the bootstrap addresses the appliance's own clients use.
	Brokers []string `json:"brokers"`
	// ModelServerGRPC are the TF Serving gRPC addresses the pipeline predicts
	// through; empty when the embedded model server's gRPC listener is off.
	ModelServerGRPC []string `json:"model_server_grpc,omitempty"`
	// Topics and the default model, so the CLI's defaults match the
	// appliance's settings even when they came from its flags.
	RequestsTopic string `json:"requests_topic"`
	ResultsTopic  string `json:"results_topic"`
	DLQTopic      string `json:"dlq_topic"`
	DefaultModel  string `json:"default_model"`
}

// ReadEndpoints reads the endpoints of the appliance that wrote them into
// dataDir. It does not say whether that appliance still runs (see PID).
func ReadEndpoints(dataDir string) (*Endpoints, error) {
	path := filepath.Join(dataDir, EndpointsFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var e Endpoints
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &e, nil
}

// endpointsComponent writes EndpointsFile. It comes after every component
// the CLI talks to except web, which writes AdminURLFile itself and must be
// the last (it reports on all the others and stops first).
func (a *Appliance) endpointsComponent() *component {
	path := filepath.Join(a.paths.Root, EndpointsFile)
	return &component{
		name: "endpoints file",
		start: func(context.Context) error {
			e := a.endpoints()
			data, err := json.MarshalIndent(e, "", "  ")
			if err != nil {
				return err
			}
			// Written to a temporary file and renamed, so the CLI never
			// reads half a file.
			tmp := path + ".tmp"
			if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
				a.logger.Warn("writing the endpoints file into the data dir; the CLI will need --brokers/--url", "file", path, "err", err)
				return nil
			}
			if err := os.Rename(tmp, path); err != nil {
				os.Remove(tmp)
				a.logger.Warn("writing the endpoints file into the data dir; the CLI will need --brokers/--url", "file", path, "err", err)
			}
			return nil
		},
		stop: func() error {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			return nil
		},
	}
}

func (a *Appliance) endpoints() Endpoints {
	e := Endpoints{
		PID:           os.Getpid(),
		RequestsTopic: a.cfg.Pipeline.RequestsTopic,
		ResultsTopic:  a.cfg.Pipeline.ResultsTopic,
		DLQTopic:      a.cfg.Pipeline.DLQTopic,
		DefaultModel:  a.cfg.Pipeline.DefaultModel,
	}
	a.mu.Lock()
	e.Brokers = append([]string(nil), a.client.Brokers...)
	be := a.backend
	a.mu.Unlock()
	if be != nil {
		e.ModelServerGRPC = be.grpcAddrs()
	}
	return e
}

// dialableAddr turns a listen address into one a local client can dial.
func dialableAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strings.TrimSpace(port))
}
