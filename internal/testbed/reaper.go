// Package testbed builds throwaway networks for end-to-end tests and
// benchmarks: pairs of network namespaces joined by a veth (addresses from
// 198.51.100.0/24 only), and long-running processes started inside them.
//
// Everything it creates is registered with a reaper, so that it goes away on
// a normal return (the functions it hands back), on a panic (Guard), and on
// SIGINT/SIGTERM/SIGHUP (HandleSignals), newest first.
package testbed

import (
	"fmt"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
)

var reaper struct {
	sync.Mutex
	next int
	fns  map[int]func()
}

// AtExit registers fn to run at most once: when the returned function is
// called (defer it, or hand it to t.Cleanup), or when RunAll runs, whichever
// comes first.
func AtExit(fn func()) (run func()) {
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

// RunAll runs every registered function that has not run yet, newest first.
func RunAll() {
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
}

// HandleSignals makes SIGINT, SIGTERM and SIGHUP run every registered
// function and exit with status 130. The returned function stops the
// handling (call it before a normal exit).
func HandleSignals(who string) (stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	var once sync.Once
	go func() {
		select {
		case sig := <-c:
			fmt.Fprintf(os.Stderr, "%s: %v: cleaning up namespaces and processes\n", who, sig)
			RunAll()
			os.Exit(130)
		case <-done:
		}
	}()
	return func() { once.Do(func() { signal.Stop(c); close(done) }) }
}

// Guard runs every registered function when the calling function panics,
// then panics on. Use it as `defer testbed.Guard()` at the top of main (and
// of every goroutine that may panic while namespaces exist).
func Guard() {
	if r := recover(); r != nil {
		RunAll()
		panic(r)
	}
}
