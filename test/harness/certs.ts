/**
 * Test certificates made with the real `openssl` command: a CA, server certificates with SANs, client
 * certificates with any subject (expired ones too), CRLs. Files are written into `dir`.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export interface CertFiles {
  readonly cert: string;
  readonly key: string;
  readonly certPem: string;
  readonly keyPem: string;
  readonly serial: string;
}

export class TestCa {
  readonly cert: string;
  readonly key: string;
  readonly #index: string;
  #n = 0;

  constructor(
    readonly dir: string,
    readonly name = 'ca',
    subject = '/CN=Gatehouse Test CA/O=Tests',
  ) {
    this.cert = join(dir, `${name}.crt`);
    this.key = join(dir, `${name}.key`);
    openssl(
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', this.key, '-out', this.cert, '-days', '30', '-subj', subject,
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
      dir,
    );
    this.#index = join(dir, `${name}.index`);
    writeFileSync(this.#index, '');
    writeFileSync(join(dir, `${name}.crlnumber`), '01\n');
    writeFileSync(
      join(dir, `${name}.cnf`),
      `[ca]\ndefault_ca=CA_default\n[CA_default]\ndatabase=${this.#index}\ncrlnumber=${join(dir, `${name}.crlnumber`)}\n` +
        `serial=${join(dir, `${name}.serial`)}\nnew_certs_dir=${dir}\nunique_subject=no\npolicy=policy_any\ndefault_md=sha256\ndefault_crl_days=7\n` +
        `[policy_any]\ncountryName=optional\norganizationName=optional\norganizationalUnitName=optional\ncommonName=optional\nemailAddress=optional\n`,
    );
  }

  get certPem(): string {
    return readFileSync(this.cert, 'utf8');
  }

  #issue(subject: string, ext: string, opts: { days?: number; expired?: boolean }): CertFiles {
    const base = join(this.dir, `${this.name}-${++this.#n}`);
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', subject], this.dir);
    writeFileSync(`${base}.ext`, ext);
    const serial = '0x' + Array.from({ length: 16 }, () => Math.floor(Math.random() * 256).toString(16).padStart(2, '0')).join('').replace(/^0+/, '7');
    if (opts.expired) {
      // a certificate whose validity ended yesterday: `openssl x509` can't backdate, `openssl ca` can
      writeFileSync(join(this.dir, `${this.name}.serial`), serial.slice(2) + '\n');
      openssl(
        ['ca', '-batch', '-config', join(this.dir, `${this.name}.cnf`), '-cert', this.cert, '-keyfile', this.key, '-in', `${base}.csr`, '-out', `${base}.crt`,
          '-startdate', '20200101000000Z', '-enddate', '20200201000000Z', '-extfile', `${base}.ext`, '-notext', '-preserveDN'],
        this.dir,
      );
    } else {
      openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', this.cert, '-CAkey', this.key, '-set_serial', serial, '-out', `${base}.crt`, '-days', String(opts.days ?? 30), '-extfile', `${base}.ext`], this.dir);
    }
    const certPem = readFileSync(`${base}.crt`, 'utf8');
    const out = execFileSync('openssl', ['x509', '-noout', '-serial', '-in', `${base}.crt`]).toString();
    return { cert: `${base}.crt`, key: `${base}.key`, certPem, keyPem: readFileSync(`${base}.key`, 'utf8'), serial: out.trim().split('=')[1]! };
  }

  server(names: readonly string[]): CertFiles {
    const san = names.map((n) => (/^[\d.]+$/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
    return this.#issue(`/CN=${names[0]}`, `subjectAltName=${san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`, {});
  }

  client(subject: string, opts: { expired?: boolean } = {}): CertFiles {
    return this.#issue(subject, 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n', opts);
  }

  /** Revokes `cert` in this CA's database. */
  revoke(cert: CertFiles): void {
    openssl(['ca', '-config', join(this.dir, `${this.name}.cnf`), '-cert', this.cert, '-keyfile', this.key, '-revoke', cert.cert], this.dir);
  }

  /** Writes the CRL (PEM, label X509 CRL) listing every revoked certificate; returns its path. */
  crl(file = join(this.dir, `${this.name}.crl`)): string {
    openssl(['ca', '-config', join(this.dir, `${this.name}.cnf`), '-cert', this.cert, '-keyfile', this.key, '-gencrl', '-out', file], this.dir);
    return file;
  }
}
