# Demo PSGI app shipped by halgen: replace it by setting app_repo in the answers.
# /healthz answers 200 while this instance can serve; the load balancer and the
# rolling deploy both rely on it.
use strict;
use warnings;
use Plack::Builder;
use Sys::Hostname ();

my $host = Sys::Hostname::hostname();

my $healthz = sub {
    return [ 200, [ 'Content-Type' => 'text/plain', 'Cache-Control' => 'no-store' ], ["ok\n"] ];
};

my $hello = sub {
    my $env = shift;
    my $body = "Hello from $host (pid $$)\n";
    return [ 200, [ 'Content-Type' => 'text/plain; charset=utf-8' ], [$body] ];
};

builder {
    mount '/healthz' => $healthz;
    mount '/'        => $hello;
};
