package testbed

import (
	"net"
	"sync"
)

// Serve accepts connections on ln until it is closed, handling each in a
// goroutine of its own; wait returns once the accept loop has ended.
func Serve(ln net.Listener, handle func(net.Conn)) (wait func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return wg.Wait
}
