import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MalformedPacketError } from '../errors.ts';
import { chooseBootFile, describeClient } from './boot-file.ts';
import { ipToBytes, MessageType, Opt, readClientArchs, readUserClasses, text } from './options.ts';
import { BOOTREQUEST, encodeDhcp, macOf, parseDhcp } from './packet.ts';
import { replyDestination } from './reply.ts';

const chaddr = new Uint8Array([0x52, 0x54, 0, 0x12, 0x34, 0x56]);

function discover(options: [number, Uint8Array][], fields: { giaddr?: string; ciaddr?: string } = {}): Uint8Array {
  return encodeDhcp({
    op: BOOTREQUEST,
    xid: 0xdeadbeef,
    flags: 0,
    chaddr,
    ...fields,
    options: [[Opt.messageType, new Uint8Array([MessageType.discover])], ...options],
  });
}

describe('DHCP codec', () => {
  it('lays out the BOOTP header, magic cookie and options (byte vector)', () => {
    const wire = discover([[Opt.requestedIp, ipToBytes('10.0.0.5')]], { giaddr: '10.0.0.1' });
    expect(wire.length).toBe(300);
    expect([...wire.subarray(0, 4)]).toEqual([1, 1, 6, 0]);
    expect([...wire.subarray(4, 8)]).toEqual([0xde, 0xad, 0xbe, 0xef]);
    expect([...wire.subarray(24, 28)]).toEqual([10, 0, 0, 1]);
    expect([...wire.subarray(28, 34)]).toEqual([...chaddr]);
    expect([...wire.subarray(236, 240)]).toEqual([99, 130, 83, 99]);
    expect([...wire.subarray(240, 250)]).toEqual([53, 1, 1, 50, 4, 10, 0, 0, 5, 255]);
    const p = parseDhcp(wire);
    expect(p).toMatchObject({ op: 1, xid: 0xdeadbeef, giaddr: '10.0.0.1', ciaddr: '0.0.0.0' });
    expect(macOf(p)).toBe('52:54:00:12:34:56');
  });

  it('concatenates a split option (RFC 3396) and splits long ones when encoding', () => {
    const long = new Uint8Array(300).fill(7);
    const p = parseDhcp(discover([[Opt.bootFileName, long]]));
    expect(p.options.get(Opt.bootFileName)).toEqual(long);
  });

  it('rejects short packets, a bad cookie, overrunning options and a missing message type', () => {
    const good = discover([]);
    const badCookie = good.slice();
    badCookie[236] = 0;
    const overrun = good.slice(0, 243);
    overrun.set([53, 1, 1], 240);
    const overrun2 = new Uint8Array([...good.subarray(0, 240), 53, 1, 1, 12, 200, 65]);
    const noType = encodeDhcp({ op: 1, xid: 1, flags: 0, chaddr, options: [] });
    const badHlen = good.slice();
    badHlen[2] = 17;
    for (const wire of [good.subarray(0, 100), badCookie, overrun2, noType, badHlen])
      expect(() => parseDhcp(wire)).toThrow(MalformedPacketError);
    expect(parseDhcp(overrun).options.get(53)).toEqual(new Uint8Array([1]));
  });

  it('never throws anything but MalformedPacketError on arbitrary or mutated bytes', () => {
    const base = discover([
      [Opt.vendorClass, text('PXEClient:Arch:00000:UNDI:002001')],
      [Opt.clientArch, new Uint8Array([0, 7])],
    ]);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 1500 }),
          fc.tuple(fc.integer({ min: 0, max: base.length }), fc.uint8Array({ minLength: 1, maxLength: 40 })).map(([at, junk]) => {
            const copy = base.slice();
            copy.set(junk.subarray(0, copy.length - at), at);
            return copy;
          }),
          fc.integer({ min: 0, max: base.length }).map((n) => base.subarray(0, n)),
        ),
        (wire) => {
          try {
            const p = parseDhcp(wire);
            describeClient(p);
          } catch (err) {
            expect(err).toBeInstanceOf(MalformedPacketError);
          }
        },
      ),
      { numRuns: 5000 },
    );
  });
});

describe('PXE options and the boot chain', () => {
  const config = { serverAddress: '10.0.0.1', httpPort: 6386, biosFile: 'undionly.kpxe', efiFile: 'ipxe.efi' };
  const client = (options: [number, Uint8Array][]) => describeClient(parseDhcp(discover(options)));

  it('reads option 93 as a list of 16-bit architectures and option 77 in both spellings', () => {
    expect(readClientArchs(new Uint8Array([0, 7, 0, 9]))).toEqual([7, 9]);
    expect(readClientArchs(new Uint8Array([0]))).toEqual([]);
    expect(readUserClasses(text('iPXE'))).toEqual(['iPXE']);
    expect(readUserClasses(new Uint8Array([4, ...text('iPXE'), 3, ...text('foo')]))).toEqual(['iPXE', 'foo']);
  });

  it('sends legacy BIOS to undionly.kpxe, UEFI x86-64 to ipxe.efi, iPXE to its HTTP script', () => {
    expect(
      chooseBootFile(
        client([
          [Opt.vendorClass, text('PXEClient:Arch:00000:UNDI:002001')],
          [Opt.clientArch, new Uint8Array([0, 0])],
        ]),
        config,
      ),
    ).toEqual({ kind: 'tftp', server: '10.0.0.1', file: 'undionly.kpxe' });
    expect(chooseBootFile(client([[Opt.clientArch, new Uint8Array([0, 7])]]), config)).toMatchObject({ file: 'ipxe.efi' });
    expect(chooseBootFile(client([[Opt.clientArch, new Uint8Array([0, 9])]]), config)).toMatchObject({ file: 'ipxe.efi' });
    expect(chooseBootFile(client([[Opt.vendorClass, text('PXEClient:Arch:00007:UNDI:003016')]]), config)).toMatchObject({
      file: 'ipxe.efi',
    });
    expect(
      chooseBootFile(
        client([
          [Opt.userClass, text('iPXE')],
          [Opt.clientArch, new Uint8Array([0, 0])],
        ]),
        config,
      ),
    ).toEqual({ kind: 'http', server: '10.0.0.1', url: 'http://10.0.0.1:6386/boot/52:54:00:12:34:56.ipxe' });
    expect(chooseBootFile(client([[Opt.ipxeEncap, new Uint8Array([1, 1, 1])]]), config)).toMatchObject({ kind: 'http' });
  });

  it('gives no boot file to a plain DHCP client or an architecture without a binary', () => {
    expect(chooseBootFile(client([]), config)).toBeNull();
    expect(chooseBootFile(client([[Opt.clientArch, new Uint8Array([0, 11])]]), config)).toBeNull();
  });

  it('replies to the relay, then to ciaddr, else broadcasts', () => {
    const ports = { client: 68, relay: 67 };
    expect(replyDestination(parseDhcp(discover([], { giaddr: '10.1.0.1' })), false, ports)).toEqual({ address: '10.1.0.1', port: 67 });
    expect(replyDestination(parseDhcp(discover([], { ciaddr: '10.0.0.9' })), false, ports)).toEqual({ address: '10.0.0.9', port: 68 });
    expect(replyDestination(parseDhcp(discover([], { ciaddr: '10.0.0.9' })), true, ports)).toEqual({
      address: '255.255.255.255',
      port: 68,
    });
    expect(replyDestination(parseDhcp(discover([])), false, ports)).toEqual({ address: '255.255.255.255', port: 68 });
  });
});
