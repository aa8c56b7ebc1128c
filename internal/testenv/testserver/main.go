// Command testserver stands for "the internet" in isolation tests: it
// answers HTTP on the given ports with 200 and its name, and DNS (UDP) on
// the given port with its own address for any A query. With -https it
// also serves TLS (the certificate and key in $TESTSERVER_CERT and
// $TESTSERVER_KEY, PEM) and answers every request with what it received,
// as JSON (echo); /redirect answers 302 to $TESTSERVER_REDIRECT. Tests run
// it in containers they start, never anywhere else.
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/miekg/dns"
)

func main() {
	name := flag.String("name", "testserver", "name to answer with")
	ports := flag.String("http", "80", "comma-separated HTTP ports")
	dnsPort := flag.String("dns", "", "DNS port (empty: none)")
	httpsPorts := flag.String("https", "", "comma-separated HTTPS ports that echo (empty: none)")
	flag.Parse()
	if *httpsPorts != "" {
		cert, err := tls.X509KeyPair([]byte(os.Getenv("TESTSERVER_CERT")), []byte(os.Getenv("TESTSERVER_KEY")))
		if err != nil {
			log.Fatalf("-https: $TESTSERVER_CERT and $TESTSERVER_KEY: %v", err)
		}
		for _, p := range strings.Split(*httpsPorts, ",") {
			srv := &http.Server{Addr: ":" + p, Handler: http.HandlerFunc(echo),
				TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}}
			go func() { log.Fatal(srv.ListenAndServeTLS("", "")) }()
		}
	}
	for _, p := range strings.Split(*ports, ",") {
		srv := &http.Server{Addr: ":" + p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s on port %s\n", *name, p)
		})}
		go func() { log.Fatal(srv.ListenAndServe()) }()
	}
	if *dnsPort != "" {
		self := ownAddr()
		dns.HandleFunc(".", func(w dns.ResponseWriter, q *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(q)
			if len(q.Question) == 1 && q.Question[0].Qtype == dns.TypeA && self != nil {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: self})
			}
			_ = w.WriteMsg(m)
		})
		go func() { log.Fatal((&dns.Server{Addr: ":" + *dnsPort, Net: "udp"}).ListenAndServe()) }()
	}
	fmt.Fprintln(os.Stderr, "testserver ready")
	select {}
}

func ownAddr() net.IP {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.To4()
		}
	}
	return nil
}

// Echo is what an HTTPS port answers: the request as the server saw it.
type Echo struct {
	Method, Host, Path, Proto, SNI string
	Header                         http.Header
}

// echo answers with the request it received, or a redirect on /redirect.
func echo(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/redirect" {
		http.Redirect(w, r, os.Getenv("TESTSERVER_REDIRECT"), http.StatusFound)
		return
	}
	e := Echo{Method: r.Method, Host: r.Host, Path: r.URL.Path, Proto: r.Proto, Header: r.Header}
	if r.TLS != nil {
		e.SNI = r.TLS.ServerName
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(e)
}
