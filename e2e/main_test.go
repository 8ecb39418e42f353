//go:build e2e

package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	seedFlag   = flag.Int64("e2e.seed", 0, "seed for the random sample of striped ports (0: from the clock; logged either way)")
	matrixFlag = flag.String("e2e.matrix", "", "write the landing matrix to this file (default: $TMPDIR/portstripe-e2e-matrix.txt)")
	updateFlag = flag.Bool("e2e.update-captured", false, "rewrite fixtures/captured/*.hex from this run's captured first packets")
	keepFlag   = flag.Bool("e2e.keep", false, "keep the temporary directory (logs, PKI, configs) after the run")
)

// cliPath is the portstripe CLI built once by TestMain.
var cliPath string

// tools are the programs the suite drives, with the Debian package that
// brings each.
var tools = map[string]string{
	"ip":               "iproute2",
	"iptables":         "iptables",
	"iptables-restore": "iptables",
	"haproxy":          "haproxy",
	"openvpn":          "openvpn",
	"openssl":          "openssl",
	"sshd":             "openssh-server",
	"ssh":              "openssh-client",
	"ssh-keygen":       "openssh-client",
	"ssh-keyscan":      "openssh-client",
}

func TestMain(m *testing.M) {
	flag.Parse()
	if err := preflight(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "portstripe-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	removeBin := atExit(func() { os.RemoveAll(dir) })
	cliPath = filepath.Join(dir, "portstripe")
	if err := buildCLI(cliPath); err != nil {
		removeBin()
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	removeStaleNamespaces()
	stop := reapOnSignal()
	code := m.Run()
	stop()
	removeBin()
	os.Exit(code)
}

// preflight fails early, and says what to install, when the suite cannot run.
func preflight() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the end-to-end suite creates network namespaces and must run as root")
	}
	var missing []string
	for tool, pkg := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", tool, pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing tools: %v", missing)
	}
	return nil
}

func buildCLI(out string) error {
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", out, "github.com/portstripe/portstripe/cmd/portstripe")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/portstripe: %v\n%s", err, b)
	}
	fmt.Fprintf(os.Stderr, "e2e: built %s in %s\n", out, time.Since(start).Round(time.Millisecond))
	return nil
}

// The reaper holds every cleanup the running test registered, so that an
// interrupt (SIGINT, SIGTERM) still kills the processes and deletes the
// namespaces; t.Cleanup runs the same functions on a normal end.
var reaper struct {
	sync.Mutex
	next int
	fns  map[int]func()
}

// atExit registers fn to run at most once, on interrupt or when the returned
// function is called (from t.Cleanup).
func atExit(fn func()) (run func()) {
	var once sync.Once
	reaper.Lock()
	if reaper.fns == nil {
		reaper.fns = map[int]func(){}
	}
	id := reaper.next
	reaper.next++
	reaper.fns[id] = func() { once.Do(fn) }
	reaper.Unlock()
	return func() {
		reaper.Lock()
		delete(reaper.fns, id)
		reaper.Unlock()
		once.Do(fn)
	}
}

// reapOnSignal runs every registered cleanup, newest first, when the test
// binary is interrupted, then exits.
func reapOnSignal() (stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-c:
			fmt.Fprintf(os.Stderr, "e2e: %v: cleaning up namespaces and processes\n", sig)
			reaper.Lock()
			ids := make([]int, 0, len(reaper.fns))
			for id := range reaper.fns {
				ids = append(ids, id)
			}
			fns := reaper.fns
			reaper.fns = nil
			reaper.Unlock()
			sort.Sort(sort.Reverse(sort.IntSlice(ids)))
			for _, id := range ids {
				fns[id]()
			}
			os.Exit(130)
		case <-done:
		}
	}()
	return func() { signal.Stop(c); close(done) }
}
