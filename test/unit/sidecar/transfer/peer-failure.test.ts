import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { peerFailure } from '../../../../sidecar/src/transfer/peer-failure';

function serviceError(code: status, details: string): ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new Metadata() });
}

// Issue #13: a chunk corrupted in flight (a proxy flipping a byte) is named as such, not as a lost peer.
describe('peerFailure', () => {
  it.each([
    [status.INTERNAL, 'Received RST_STREAM: error 0:1 ssl3_read_bytes:sslv3 alert bad record mac'],
    [status.UNAVAILABLE, 'read ECONNRESET: SSL routines:tls_get_more_records:decryption failed or bad record mac'],
    [status.CANCELLED, 'stream closed: tls alert bad_record_mac'],
  ])('a TLS record whose authentication failed (%s) is NC_TRANSFER_STREAM_CORRUPT, recoverable', (code, details) => {
    const err = peerFailure(serviceError(code, details), '10.0.0.2:7451');
    expect(err).toMatchObject({ code: 'NC_TRANSFER_STREAM_CORRUPT', recoverable: true });
    expect(err.message).toContain('altered in flight');
  });

  it('a refused handshake stays an authentication failure, a dropped connection a lost peer', () => {
    const handshake = serviceError(status.UNAVAILABLE, 'ssl handshake failure: certificate verify failed');
    expect(peerFailure(handshake, 'p').code).toBe('NC_TRANSFER_AUTH_FAILED');
    const dropped = serviceError(status.UNAVAILABLE, 'Connection dropped');
    expect(peerFailure(dropped, 'p')).toMatchObject({ code: 'NC_TRANSFER_PEER_UNAVAILABLE', recoverable: true });
  });
});
