// Command testserver stands for "the internet" in isolation tests: it
// answers HTTP on the given ports with 200 and its name, and DNS (UDP) on
// the given port with its own address for any A query. Tests run it in
// containers they start, never anywhere else.
package main

import (
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
	flag.Parse()
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
