// Package sidecar supervises a tensorflow_model_server child process: the
// production shape of infergate's model server, next to the real TensorFlow
// Serving.
//
// The Supervisor writes TF Serving's configuration files (models.config,
// batching.config, monitoring.config) into its data directory, starts the
// binary with TF's flags on free ports, and calls it ready only when
// GetModelStatus shows an AVAILABLE version of every configured model (TF
// opens its ports only after loading, which can take minutes, so an open
// port proves nothing by itself). It restarts the process when it exits,
// with exponential backoff and crash-loop detection, keeps its output in
// size-bounded files and an in-memory tail, stops it with SIGTERM and then
// SIGKILL, and on Linux makes the kernel kill it if infergate dies, even by
// SIGKILL. Reload changes the models (new versions, labels, added models)
// through HandleReloadConfigRequest without a restart.
//
// Predictor is the pipeline's view: a TF Serving client that answers
// codes.Unavailable while the child is not ready, so requests wait rather
// than fail, and that notices when the version that answers is not the one
// configured (TF Serving keeps an old version serving when a new one fails
// to load).
//
// docs/sidecar.md describes the flag mapping, readiness and operations.
package sidecar
