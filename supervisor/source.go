package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/node"
)

// A Source is where run's desired state comes from: the node file
// (FileSource) or a fleet's store (fleet/agent). Run applies whatever it
// yields through the same path and tells it how every pass went.
type Source interface {
	// Watch starts watching (an error there stops run) and yields each
	// new desired state until ctx ends.
	Watch(ctx context.Context) (<-chan Desire, error)
	// Input names what the source reads, for the log ("node file").
	Input() string
	// Ready says why the source cannot tell what to run now (a store
	// out of reach), or nil: one of /readyz's conditions.
	Ready() error
	// Passed is told the outcome of every reconcile pass, in order; it
	// must not block for long (the loop waits for it).
	Passed(Pass)
}

// Desire is one desired state from a Source: a compiled node, or the input
// error (a *node.FieldError or the like) that stopped it compiling, in
// which case the last applied state keeps serving.
type Desire struct {
	Result *compiler.Result
	Err    error
	// Reason names what brought it, for the log ("node file changed").
	Reason string
}

// Pass is the outcome of one reconcile pass.
type Pass struct {
	// Desired is what the pass was asked to run, Serving what the machine
	// runs after it (the last good state: Desired when Err is nil).
	Desired, Serving *compiler.Result
	// Err is why the machine does not run Desired (nil: it does).
	Err error
	// Drift is what the pass found changed behind portstripe's back and
	// put back (Change.What), when nothing was asked to change.
	Drift []string
	// Restarted says the pass had to start HAProxy again.
	Restarted bool
}

// FileSource is the node file: compiled again when it changes (debounced)
// and on SIGHUP.
type FileSource struct {
	Node node.Options
	// Debounce groups the burst of events an editor's save makes; 0
	// means 200 ms.
	Debounce time.Duration
	Log      *slog.Logger
}

// Watch watches the node file's directory: editors replace the file by
// renaming a temporary one over it, which ends a watch on the file itself.
func (s *FileSource) Watch(ctx context.Context) (<-chan Desire, error) {
	debounceAfter := s.Debounce
	if debounceAfter == 0 {
		debounceAfter = 200 * time.Millisecond
	}
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch node file: %w", err)
	}
	target := ""
	if s.Node.Path != "" {
		target, _ = filepath.Abs(s.Node.Path)
		if err := watcher.Add(filepath.Dir(target)); err != nil {
			watcher.Close()
			return nil, fmt.Errorf("watch %s: %w", filepath.Dir(target), err)
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	out := make(chan Desire)
	go func() {
		defer watcher.Close()
		defer signal.Stop(hup)
		var debounce <-chan time.Time
		send := func(reason string) {
			res, err := compiler.Compile(s.Node)
			select {
			case out <- Desire{Result: res, Err: err, Reason: reason}:
			case <-ctx.Done():
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-watcher.Events:
				if p, _ := filepath.Abs(ev.Name); p == target {
					debounce = time.After(debounceAfter)
				}
			case err := <-watcher.Errors:
				s.Log.Warn("node file watch", "error", err)
			case <-debounce:
				debounce = nil
				send("node file changed")
			case <-hup:
				send("SIGHUP")
			}
		}
	}()
	return out, nil
}

// Input is what a FileSource reads.
func (s *FileSource) Input() string { return "node file" }

// Ready: a node file is always at hand.
func (s *FileSource) Ready() error { return nil }

// Passed: the node file needs no answer.
func (s *FileSource) Passed(Pass) {}
