package reload

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch calls check after every change in the folder of the file at path,
// debounced, and once at the start, until ctx is done. It watches the
// folder, not the file, so that editors that save by writing a new file
// and renaming it over the old one (and Kubernetes' symlink swaps) are
// seen. check decides whether the file really changed
// ([State.ReloadIfChanged]).
func Watch(ctx context.Context, path string, debounce time.Duration, log *slog.Logger, check func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := w.Add(filepath.Dir(path)); err != nil {
		w.Close()
		return err
	}
	go func() {
		defer w.Close()
		// One check at once: a save between the first load and the
		// watch is not missed.
		timer := time.NewTimer(0)
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case _, ok := <-w.Events:
				if !ok {
					return
				}
				// Any change in the folder may be ours (renames,
				// symlinks): check after the burst settles.
				timer.Reset(debounce)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				log.Warn("configuration watch error", "config", path, "error", err.Error())
			case <-timer.C:
				check()
			}
		}
	}()
	return nil
}

// digest returns a hash of b.
func digest(b []byte) [sha256.Size]byte { return sha256.Sum256(b) }
