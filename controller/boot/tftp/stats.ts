/** Counters of the TFTP server, read by metrics and by tests. */
export interface TftpStats {
  requests: number;
  transfersStarted: number;
  transfersCompleted: number;
  transfersFailed: number;
  refused: number;
  notFound: number;
  malformed: number;
  retransmits: number;
  duplicateAcks: number;
  foreignTid: number;
  bytesSent: number;
}

export function emptyTftpStats(): TftpStats {
  return {
    requests: 0,
    transfersStarted: 0,
    transfersCompleted: 0,
    transfersFailed: 0,
    refused: 0,
    notFound: 0,
    malformed: 0,
    retransmits: 0,
    duplicateAcks: 0,
    foreignTid: 0,
    bytesSent: 0,
  };
}
