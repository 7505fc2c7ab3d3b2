package demo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/infergate/infergate/inference/tfserving"
)

// FileName is the model file inside a version directory: the embedded
// model server's name for an ONNX model (modelserver.ModelFileName; a test
// there checks the two agree, since the server imports nothing of this
// package outside its tests).
const FileName = "model.onnx"

// Install writes the demo model to modelsDir/demo/1/model.onnx when
// modelsDir/demo does not exist yet (first start). An existing directory is
// left alone, whatever it holds: the operator may have replaced the demo
// model.
func Install(modelsDir string) error {
	target := filepath.Join(modelsDir, Name)
	if _, err := os.Lstat(target); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("demo model: %w", err)
	}
	if err := os.MkdirAll(modelsDir, 0o755); err != nil {
		return fmt.Errorf("demo model: %w", err)
	}
	// Build demo/ in a temporary directory and rename it, so a crash never
	// leaves a demo/ without its version (which would stop later starts from
	// writing it).
	tmp, err := os.MkdirTemp(modelsDir, ".demo-")
	if err != nil {
		return fmt.Errorf("demo model: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := writeVersion(tmp); err != nil {
		return fmt.Errorf("demo model: %w", err)
	}
	if err := os.Rename(tmp, target); err != nil {
		if _, statErr := os.Lstat(target); statErr == nil {
			return nil // someone else wrote it meanwhile
		}
		return fmt.Errorf("demo model: %w", err)
	}
	if d, err := os.Open(modelsDir); err == nil {
		d.Sync() // best effort: make the rename durable
		d.Close()
	}
	return nil
}

// writeVersion writes dir/1/model.onnx, synced, so the rename that
// publishes dir cannot expose a short file after a crash.
func writeVersion(dir string) error {
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(dir, "1"), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "1", FileName), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(ONNX)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// ModelConfig is the model entry serving what Install wrote.
func ModelConfig(modelsDir string) tfserving.ModelConfig {
	return tfserving.ModelConfig{Name: Name, BasePath: filepath.Join(modelsDir, Name)}
}
