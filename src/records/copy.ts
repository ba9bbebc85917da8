import type pg from 'pg';

/** What node-postgres hands a Submittable (the parts used here). */
interface PgConnection {
  stream: { write(chunk: Buffer): boolean };
  query(text: string): void;
  endCopyFrom(): void;
}

/**
 * One simple Query holding several statements, one of them a `COPY … FROM STDIN`, with the copy
 * data written right behind it instead of after the server's CopyInResponse: the whole exchange is
 * one round trip, and the server never waits for this process (which may be busy preparing the
 * next batch) in the middle of the transaction. The protocol allows it: the server reads the data
 * when it reaches the COPY and, if a statement before it failed, skips the rest of the query and
 * drops the data. Resolves with the command tags (`BEGIN`, `COPY 1000`, …) at ReadyForQuery;
 * rejects with the server's error (the rest of the query is then skipped: a transaction it began
 * is left open and aborted).
 */
export class PipelinedCopy implements pg.Submittable {
  readonly done: Promise<string[]>;
  private readonly tags: string[] = [];
  private resolve!: (tags: string[]) => void;
  private reject!: (err: Error) => void;

  /** `messages`: the copy data as complete CopyData protocol messages. */
  constructor(
    private readonly text: string,
    private readonly messages: readonly Buffer[],
  ) {
    this.done = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  submit(connection: pg.Connection): void {
    const c = connection as unknown as PgConnection;
    c.query(this.text);
    // Framed already: written to the socket as they are, behind the query (as pg-copy-streams
    // does), instead of being copied again into the driver's message buffer.
    for (const message of this.messages) c.stream.write(message);
    c.endCopyFrom();
  }

  handleCommandComplete(msg: { text: string }): void {
    this.tags.push(msg.text);
  }
  handleReadyForQuery(): void {
    this.resolve(this.tags);
  }
  /** The server's error, or the connection's: node-postgres calls nothing else after it. */
  handleError(err: Error): void {
    this.reject(err);
  }
  handleCopyInResponse(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(): void {}
}

/**
 * One simple Query running a `COPY … TO STDOUT`; resolves with the copy data as one Buffer. The
 * data reaches this process as the bytes the server sent: nothing is decoded into JavaScript
 * strings or row objects (node-postgres decodes every value of a SELECT into a string).
 */
export class CopyOut implements pg.Submittable {
  readonly done: Promise<Buffer>;
  private data = Buffer.allocUnsafe(64 * 1024);
  private size = 0;
  private failed = false;
  private resolve!: (data: Buffer) => void;
  private reject!: (err: Error) => void;

  constructor(private readonly text: string) {
    this.done = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  submit(connection: pg.Connection): void {
    (connection as unknown as PgConnection).query(this.text);
  }

  handleCopyData(msg: { chunk: Buffer }): void {
    // Copied now: the chunk is a view of the driver's read buffer, which it reuses.
    const { chunk } = msg;
    if (this.size + chunk.length > this.data.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.data.length * 2, this.size + chunk.length));
      this.data.copy(grown, 0, 0, this.size);
      this.data = grown;
    }
    this.size += chunk.copy(this.data, this.size);
  }
  handleReadyForQuery(): void {
    if (!this.failed) this.resolve(this.data.subarray(0, this.size));
  }
  handleError(err: Error): void {
    this.failed = true;
    this.reject(err);
  }
  handleCommandComplete(): void {}
  handleCopyInResponse(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
}
