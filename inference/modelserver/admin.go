package modelserver

import (
	"errors"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// UploadVersion adds a version of a configured model: it checks that onnx
// loads, writes it to a temporary directory inside the base path (ignored by
// scans: the name is not a number) and renames it into place, so a scan never
// sees it half-written; then it scans the model at once. version 0 means one
// above the highest version directory. It returns the version written; a
// version the policy does not select is written but not loaded.
// Errors are gRPC status errors: NOT_FOUND (model not configured),
// INVALID_ARGUMENT (not a loadable model, or no version above the highest),
// ALREADY_EXISTS.
func (s *Server) UploadVersion(name string, version int64, onnx []byte) (int64, error) {
	if _, err := loadONNX(onnx, s.cfg.Limits.MaxFoldedConstantBytes, s.cfg.Threads); err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "not a loadable ONNX model: %v", err)
	}
	return s.upload(name, version, func(parent, dir string) error { return writeVersionDir(parent, dir, onnx) })
}

// UploadVersionFile is UploadVersion for a model file already on disk (an
// upload streamed to a temporary file): the file is moved into the new
// version directory, by a rename when it is on the same file system as the
// base path (put it there: a file named .something is ignored by scans),
// else by a copy. The caller removes the file if it is still there after an
// error.
func (s *Server) UploadVersionFile(name string, version int64, path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, status.Errorf(codes.Internal, "reading the uploaded file: %v", err)
	}
	if _, err := loadONNX(data, s.cfg.Limits.MaxFoldedConstantBytes, s.cfg.Threads); err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "not a loadable ONNX model: %v", err)
	}
	return s.upload(name, version, func(parent, dir string) error { return moveVersionDir(parent, dir, path) })
}

func (s *Server) upload(name string, version int64, write func(parent, dir string) error) (int64, error) {
	if version < 0 {
		return 0, status.Errorf(codes.InvalidArgument, "version %d is negative", version)
	}
	cfg, ok := s.m.configured(name)
	if !ok {
		return 0, status.Errorf(codes.NotFound, "model %s is not configured", name)
	}

	s.m.pollMu.Lock()
	defer s.m.pollMu.Unlock()
	version, err := placeVersion(cfg.BasePath, name, version, write)
	if err != nil {
		return 0, err
	}
	s.log.Info("model version uploaded", "model", name, "version", version)
	s.m.trust(name, version)
	s.m.mu.Lock()
	mm := s.m.models[name]
	s.m.mu.Unlock()
	if mm != nil && !mm.removed {
		s.m.pollModel(mm, false)
	}
	return version, nil
}

// moveVersionDir is writeVersionDir for a file on disk: renamed (or copied,
// across file systems) into a temporary directory, synced, and the
// directory renamed into place.
// PlaceVersionFile is UploadVersionFile for a model repository served by
// another process (the appliance's isolated mode): it checks that the file
// loads (folding at most maxFolded bytes of constants) and moves it into
// base/<version>/, which that process's file-system poll then finds.
// version 0 means one above the highest version directory.
func PlaceVersionFile(base, name string, version int64, path string, maxFolded int64) (int64, error) {
	if version < 0 {
		return 0, status.Errorf(codes.InvalidArgument, "version %d is negative", version)
	}
	onnx, err := os.ReadFile(path)
	if err != nil {
		return 0, status.Errorf(codes.Internal, "reading the uploaded file: %v", err)
	}
	if _, err := loadONNX(onnx, maxFolded, 1); err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "not a loadable ONNX model: %v", err)
	}
	return placeVersion(base, name, version, func(parent, dir string) error { return moveVersionDir(parent, dir, path) })
}

// placeVersion writes version (0: one above the highest) of model name
// into base with write, which must make dir appear whole (a rename).
func placeVersion(base, name string, version int64, write func(parent, dir string) error) (int64, error) {
	if err := os.MkdirAll(base, 0o755); err != nil {
		return 0, status.Errorf(codes.Internal, "creating base path: %v", err)
	}
	present, err := scan(base)
	if err != nil {
		return 0, status.Errorf(codes.Internal, "reading base path: %v", err)
	}
	if version == 0 {
		version = 1
		if len(present) > 0 {
			highest := slices.Max(slices.Collect(maps.Keys(present)))
			if highest == math.MaxInt64 {
				return 0, status.Errorf(codes.InvalidArgument,
					"model %s already has version %d, the highest an int64 holds: there is no next version; upload with an explicit, unused version", name, highest)
			}
			version = highest + 1
		}
	}
	dir := filepath.Join(base, strconv.FormatInt(version, 10))
	if _, err := os.Lstat(dir); err == nil {
		return 0, status.Errorf(codes.AlreadyExists, "version %d of model %s already exists", version, name)
	}
	if err := write(base, dir); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return 0, status.Errorf(codes.AlreadyExists, "version %d of model %s already exists", version, name)
		}
		return 0, status.Errorf(codes.Internal, "writing version %d of model %s: %v", version, name, err)
	}
	return version, nil
}

func moveVersionDir(parent, dir, path string) error {
	tmp, err := os.MkdirTemp(parent, ".upload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // no-op after a successful rename
	target := filepath.Join(tmp, ModelFileName)
	if err := os.Rename(path, target); err != nil {
		if err := copyFile(path, target); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(target, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return finishVersionDir(parent, dir, tmp)
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// writeVersionDir writes onnx as dir/model.onnx through a temporary directory
// in parent and one rename, syncing the file first so a crash cannot leave a
// complete-looking version with a short file.
func writeVersionDir(parent, dir string, onnx []byte) error {
	tmp, err := os.MkdirTemp(parent, ".upload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // no-op after a successful rename
	f, err := os.OpenFile(filepath.Join(tmp, ModelFileName), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(onnx); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return finishVersionDir(parent, dir, tmp)
}

// finishVersionDir renames the complete temporary directory tmp to dir.
func finishVersionDir(parent, dir, tmp string) error {
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	if d, err := os.Open(parent); err == nil {
		d.Sync() // best effort: make the rename durable
		d.Close()
	}
	return nil
}

// DeleteVersion removes a version directory of a configured model and
// unloads the version at once. It refuses (FAILED_PRECONDITION) to delete
// the only AVAILABLE version, so a model is never left without one, and a
// version a label points at (move or remove the label first). A version
// that is not there is NOT_FOUND.
func (s *Server) DeleteVersion(name string, version int64) error {
	cfg, ok := s.m.configured(name)
	if !ok {
		return status.Errorf(codes.NotFound, "model %s is not configured", name)
	}
	s.m.pollMu.Lock()
	defer s.m.pollMu.Unlock()
	dir := filepath.Join(cfg.BasePath, strconv.FormatInt(version, 10))
	if _, err := os.Lstat(dir); err != nil {
		return status.Errorf(codes.NotFound, "Could not find version %d of model %s", version, name)
	}
	s.m.mu.Lock()
	mm := s.m.models[name]
	var others int
	var labels []string
	for v, vs := range mm.versions {
		if v != version && vs.state == StateAvailable {
			others++
		}
	}
	for l, v := range mm.labels {
		if v == version {
			labels = append(labels, l)
		}
	}
	self := mm.versions[version]
	s.m.mu.Unlock()
	if len(labels) > 0 {
		slices.Sort(labels)
		return status.Errorf(codes.FailedPrecondition, "version %d of model %s has labels %v: move them first", version, name, labels)
	}
	if self != nil && self.state == StateAvailable && others == 0 {
		return status.Errorf(codes.FailedPrecondition, "version %d is the only available version of model %s", version, name)
	}
	// Rename out of the numbered namespace first (one atomic step a scan
	// cannot see half done), then remove.
	tmp := filepath.Join(cfg.BasePath, ".deleted-"+strconv.FormatInt(version, 10))
	os.RemoveAll(tmp)
	if err := os.Rename(dir, tmp); err != nil {
		return status.Errorf(codes.Internal, "deleting version %d of model %s: %v", version, name, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		s.log.Warn("removing a deleted version's files", "model", name, "version", version, "err", err)
	}
	s.log.Info("model version deleted", "model", name, "version", version)
	if !mm.removed {
		s.m.pollModel(mm, false)
	}
	return nil
}
