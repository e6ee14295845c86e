import { describe, expect, it } from 'vitest';
import { apiEndpoint } from './connection.ts';

describe('the API endpoint bmctl dials', () => {
  it('takes TLS from https:// or a CA, plaintext otherwise', () => {
    expect(apiEndpoint('127.0.0.1:6385', undefined)).toEqual({ target: '127.0.0.1:6385', ca: null });
    expect(apiEndpoint('http://10.0.0.1:6385', undefined)).toEqual({ target: '10.0.0.1:6385', ca: null });
    expect(apiEndpoint('grpc://10.0.0.1:6385/', undefined)).toEqual({ target: '10.0.0.1:6385', ca: null });
    expect(apiEndpoint('10.0.0.1:6385', '/etc/bm/ca.pem')).toEqual({ target: '10.0.0.1:6385', ca: '/etc/bm/ca.pem' });
    expect(apiEndpoint('https://bm.example.net:6385', '/etc/bm/ca.pem')).toEqual({ target: 'bm.example.net:6385', ca: '/etc/bm/ca.pem' });
    // https:// without a CA: the system's trusted CAs.
    expect(apiEndpoint('HTTPS://bm.example.net:6385', undefined)).toEqual({ target: 'bm.example.net:6385', ca: '' });
  });
});
