package sidecar

import (
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/proto/servingpb"
)

// Names of the files the supervisor writes into DataDir.
const (
	ModelsFile     = "models.config"
	BatchingFile   = "batching.config"
	MonitoringFile = "monitoring.config"
	LogsDir        = "logs"
)

// ModelServerConfig converts models to TF's ModelServerConfig, the message
// behind --model_config_file and HandleReloadConfigRequest.
func ModelServerConfig(models []tfserving.ModelConfig) *servingpb.ModelServerConfig {
	return tfserving.ModelServerConfigToProto(models, DefaultPlatform)
}

// textFormat marshals m in TF's text format. Multiline output keeps the
// files readable for an operator comparing them with TF's documentation.
func textFormat(m proto.Message) ([]byte, error) {
	b, err := prototext.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append([]byte("# Written by infergate's sidecar supervisor; edits are overwritten.\n"), b...), nil
}

// writeAtomic replaces path with data so TF, which may re-read the file at
// any time, never sees it half-written.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func writeModelsFile(dir string, models []tfserving.ModelConfig) error {
	data, err := textFormat(ModelServerConfig(models))
	if err != nil {
		return fmt.Errorf("sidecar: encoding %s: %w", ModelsFile, err)
	}
	if err := writeAtomic(filepath.Join(dir, ModelsFile), data); err != nil {
		return fmt.Errorf("sidecar: writing %s: %w", ModelsFile, err)
	}
	return nil
}

// writeStaticFiles writes the files that do not change while running and
// returns the flags that point TF at them.
func writeStaticFiles(cfg Config) ([]string, error) {
	var flags []string
	if cfg.Batching != nil {
		data, err := textFormat(cfg.Batching.ToProto())
		if err != nil {
			return nil, fmt.Errorf("sidecar: encoding %s: %w", BatchingFile, err)
		}
		path := filepath.Join(cfg.DataDir, BatchingFile)
		if err := writeAtomic(path, data); err != nil {
			return nil, fmt.Errorf("sidecar: writing %s: %w", BatchingFile, err)
		}
		flags = append(flags, "--enable_batching=true", "--batching_parameters_file="+path)
	}
	if cfg.MonitoringPath != "" {
		mc := &servingpb.MonitoringConfig{PrometheusConfig: &servingpb.PrometheusConfig{Enable: true, Path: cfg.MonitoringPath}}
		data, err := textFormat(mc)
		if err != nil {
			return nil, fmt.Errorf("sidecar: encoding %s: %w", MonitoringFile, err)
		}
		path := filepath.Join(cfg.DataDir, MonitoringFile)
		if err := writeAtomic(path, data); err != nil {
			return nil, fmt.Errorf("sidecar: writing %s: %w", MonitoringFile, err)
		}
		flags = append(flags, "--monitoring_config_file="+path)
	}
	return flags, nil
}
