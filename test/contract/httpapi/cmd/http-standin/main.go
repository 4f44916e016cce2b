// Command http-standin serves the Nomad and Consul stand-ins on two loopback ports and prints
// {"nomad":URL,"consul":URL} as its first stdout line. GET /_standin/report on the Nomad port returns the
// recorded failures and requests. It exits when stdin closes, so a dying test runner never leaks it.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"nomad-chain/contract/httpapi"
)

func main() {
	rec := &httpapi.Recorder{}
	nomad := httpapi.NewNomadStandIn(rec)
	nomadLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	consulLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)

	nomadMux := http.NewServeMux()
	nomadMux.HandleFunc("GET /_standin/report", func(w http.ResponseWriter, r *http.Request) {
		failures, requests := rec.Snapshot()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"failures": failures, "requests": requests, "streamIndexes": nomad.StreamIndexes()})
	})
	nomadMux.Handle("/", nomad.Handler())

	go func() { must(http.Serve(nomadLn, nomadMux)) }()
	go func() { must(http.Serve(consulLn, httpapi.NewConsulStandIn(rec).Handler())) }()
	line, _ := json.Marshal(map[string]string{"nomad": "http://" + nomadLn.Addr().String(), "consul": "http://" + consulLn.Addr().String()})
	fmt.Println(string(line))
	_, _ = io.Copy(io.Discard, os.Stdin)
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "http-standin:", err)
		os.Exit(1)
	}
}
