# Demo PSGI app shipped by halgen: replace it by setting app_repo in the answers.
# It shows the data tier's HA paths: PostgreSQL through a libpq multi-host DSN
# (writes find the primary, reads prefer a replica) and Redis through Sentinel.
#
#   GET  /healthz      200 when PostgreSQL and Redis answer, else 503
#   GET  /livez        200 while this process serves requests (the load balancers' check:
#                      it never touches the data tier, so a database outage does not
#                      take every app server out of rotation)
#   POST /items        store the request body; answers the new id (primary)
#   GET  /items/ID     read an item back (a replica when one is up)
#   GET  /session      count visits in a Redis-backed session (cookie "sid")
#   GET  /             hello from this host and process
#
# Settings come from the environment (app.env and app-secrets.env under systemd).
use strict;
use warnings;
use DBI;
use Plack::Builder;
use Plack::Request;
use Redis;
use Sys::Hostname ();

my $host = Sys::Hostname::hostname();
my ( %dbh, $redis, $table_ready );

# Redis and Sentinel over TLS when app.env names the stack CA. Redis.pm takes no CA
# option, so IO::Socket::SSL's client defaults carry it, along with checking that the
# certificate names the address connected to (its IP address SAN).
my $redis_tls = !!$ENV{REDIS_TLS_CA_FILE};
if ($redis_tls) {
    require IO::Socket::SSL;
    IO::Socket::SSL::set_client_defaults(
        SSL_ca_file         => $ENV{REDIS_TLS_CA_FILE},
        SSL_verify_mode     => IO::Socket::SSL::SSL_VERIFY_PEER(),
        SSL_verifycn_scheme => 'default',
    );
}

sub text {
    my ( $status, $body, @headers ) = @_;
    return [ $status, [ 'Content-Type' => 'text/plain; charset=utf-8', 'Cache-Control' => 'no-store', @headers ],
        ["$body\n"] ];
}

# One connection per worker and purpose, re-made when it fails: after a
# failover the DSN leads to the new primary by itself.
sub db {
    my ($purpose) = @_;
    my $handle = $dbh{$purpose};
    return $handle if $handle && eval { $handle->ping };
    my $dsn = $purpose eq 'read' ? ( $ENV{PG_DSN_READ} || $ENV{PG_DSN} ) : $ENV{PG_DSN};
    $dbh{$purpose} = DBI->connect( $dsn, $ENV{PG_USER}, $ENV{PG_PASSWORD},
        { RaiseError => 1, PrintError => 0, AutoCommit => 1 } );
    $table_ready = 0 if $purpose eq 'write';
    return $dbh{$purpose};
}

sub cache {
    return $redis if $redis && eval { $redis->ping };
    my %common = (
        username      => $ENV{REDIS_USER},
        password      => $ENV{REDIS_PASSWORD},
        reconnect     => 2,
        every         => 100_000,
        cnx_timeout   => 1,
        read_timeout  => 1,
        write_timeout => 1,
        ssl           => $redis_tls,
    );
    $redis = $ENV{REDIS_SENTINELS}
      ? Redis->new( %common, service => $ENV{REDIS_SERVICE}, sentinels => [ split /,/, $ENV{REDIS_SENTINELS} ],
        sentinels_username => $ENV{REDIS_USER}, sentinels_password => $ENV{REDIS_PASSWORD},
        sentinels_ssl => $redis_tls,
        sentinels_cnx_timeout => 0.5, sentinels_read_timeout => 1, sentinels_write_timeout => 1 )
      : Redis->new( %common, server => $ENV{REDIS_SERVER} );
    return $redis;
}

sub healthz {
    my %state;
    $state{postgresql} = eval { db('write')->selectrow_array('SELECT 1'); 'ok' } || 'down';
    $state{redis}      = eval { cache()->ping; 'ok' }                         || 'down';
    my $ok = !grep { $_ ne 'ok' } values %state;
    return text( $ok ? 200 : 503, join ' ', map {"$_=$state{$_}"} sort keys %state );
}

sub add_item {
    my ($req) = @_;
    my $note = $req->content;
    return text( 400, 'send the item as the request body' ) unless length $note;
    my $db = db('write');
    $db->do('CREATE TABLE IF NOT EXISTS halgen_items (id bigserial PRIMARY KEY, note text NOT NULL,'
          . ' created timestamptz NOT NULL DEFAULT now())') unless $table_ready++;
    my ($id) = $db->selectrow_array( 'INSERT INTO halgen_items (note) VALUES (?) RETURNING id', undef, $note );
    return text( 201, $id );
}

sub get_item {
    my ($id) = @_;
    my ($note) = db('read')->selectrow_array( 'SELECT note FROM halgen_items WHERE id = ?', undef, $id );
    return defined $note ? text( 200, $note ) : text( 404, 'no such item (yet)' );
}

sub session {
    my ($req) = @_;
    my $sid = $req->cookies->{sid};
    $sid = join '', map { ( 'a' .. 'z', 0 .. 9 )[ rand 36 ] } 1 .. 24 unless $sid && $sid =~ /\A[a-z0-9]{24}\z/;
    my $key    = "session:$sid";
    my $visits = cache()->incr($key);
    cache()->expire( $key, 3600 );
    return text( 200, "visits=$visits", 'Set-Cookie' => "sid=$sid; Path=/; HttpOnly; SameSite=Lax" );
}

my $app = sub {
    my $req  = Plack::Request->new(shift);
    my $path = $req->path_info;
    my $response = eval {
        return text( 200, 'alive' ) if $path eq '/livez';
        return healthz() if $path eq '/healthz';
        return add_item($req) if $path eq '/items' && $req->method eq 'POST';
        return get_item($1) if $path =~ m{\A/items/([0-9]{1,18})\z} && $req->method eq 'GET';
        return session($req) if $path eq '/session';
        return text( 200, "Hello from $host (pid $$)" ) if $path eq '/';
        return text( 404, 'not found' );
    };
    return $response if $response;
    my $error = $@ || 'unknown error';
    $error =~ s/\s+\z//;
    print STDERR "app: $path: $error\n";
    return text( 503, 'temporarily unavailable' );
};

builder {
    # A Content-Length lets the PSGI server keep the connection alive without chunking, and
    # a worker killed right after writing the body leaves a complete response
    # (with chunking, the missing last chunk would cut it off at the client).
    enable 'ContentLength';
    $app;
};
