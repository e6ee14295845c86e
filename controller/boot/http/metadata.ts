/**
 * The metadata service on the HTTP boot port, cloud-init's alternative to
 * the config drive: OpenStack's /openstack/latest/... and EC2's
 * /latest/meta-data/... paths. The instance is known by the request's source
 * address (its DHCP lease, or its static address); an address without an
 * instance gets nothing but 404. Pure routing: the documents come from a
 * MetadataSource the conductor implements over the database.
 */
export interface InstanceDocuments {
  readonly instanceUuid: string;
  readonly hostname: string;
  readonly localIpv4: string;
  readonly publicKeys: readonly string[];
  readonly metaDataJson: string;
  readonly networkDataJson: string;
  readonly userData: Uint8Array | null;
}

export interface MetadataSource {
  /** The documents of the instance whose machine holds `address`, or null. */
  documentsFor(address: string): Promise<InstanceDocuments | null>;
}

export interface MetadataAnswer {
  readonly status: 200 | 404;
  readonly contentType: string;
  readonly body: Uint8Array | string;
}

const TEXT = 'text/plain; charset=utf-8';
const JSON_TYPE = 'application/json';
const NOT_FOUND: MetadataAnswer = { status: 404, contentType: TEXT, body: 'not found\n' };

export function isMetadataPath(path: string): boolean {
  return path === '/openstack' || path.startsWith('/openstack/') || path === '/latest' || path.startsWith('/latest/');
}

/** What `path` answers for these documents (null documents: the address has no instance). */
export function answerMetadata(path: string, docs: InstanceDocuments | null): MetadataAnswer {
  if (!docs) return NOT_FOUND;
  const p = path.replace(/\/+$/, '');
  const text = (body: string): MetadataAnswer => ({ status: 200, contentType: TEXT, body });
  switch (p) {
    case '/openstack':
      return text('latest\n');
    case '/openstack/latest':
      return text('meta_data.json\nnetwork_data.json\n' + (docs.userData ? 'user_data\n' : ''));
    case '/openstack/latest/meta_data.json':
      return { status: 200, contentType: JSON_TYPE, body: docs.metaDataJson };
    case '/openstack/latest/network_data.json':
      return { status: 200, contentType: JSON_TYPE, body: docs.networkDataJson };
    case '/openstack/latest/user_data':
    case '/latest/user-data':
      return docs.userData ? { status: 200, contentType: 'application/octet-stream', body: docs.userData } : NOT_FOUND;
    case '/latest':
      return text('meta-data\n' + (docs.userData ? 'user-data\n' : ''));
    case '/latest/meta-data':
      return text(
        ['instance-id', 'hostname', 'local-hostname', 'local-ipv4', ...(docs.publicKeys.length > 0 ? ['public-keys/'] : [])].join('\n') +
          '\n',
      );
    case '/latest/meta-data/instance-id':
      return text(docs.instanceUuid);
    case '/latest/meta-data/hostname':
    case '/latest/meta-data/local-hostname':
      return text(docs.hostname);
    case '/latest/meta-data/local-ipv4':
      return text(docs.localIpv4);
    case '/latest/meta-data/public-keys':
      return text(docs.publicKeys.map((_, i) => `${i}=key-${i}`).join('\n') + '\n');
  }
  const key = /^\/latest\/meta-data\/public-keys\/(\d+)(?:\/openssh-key)?$/.exec(p);
  if (key && docs.publicKeys[Number(key[1])] !== undefined) {
    return p.endsWith('/openssh-key') ? text(`${docs.publicKeys[Number(key[1])]}\n`) : text('openssh-key\n');
  }
  return NOT_FOUND;
}
