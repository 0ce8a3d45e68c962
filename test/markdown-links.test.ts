import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { posix } from 'node:path'
import { fileURLToPath } from 'node:url'
import GithubSlugger from 'github-slugger'
import { describe, expect, it } from 'vitest'

// Every relative link and every #anchor in the repository's Markdown points at something
// that exists: a file git knows (tracked, or new and not ignored), and a heading of the
// target file as GitHub slugs it. Links to this repository by absolute URL (what the
// package READMEs use, since relative ones break on the registry page) are checked the
// same way against the local file. Nothing is ever fetched.

const root = fileURLToPath(new URL('..', import.meta.url))

/** `https://github.com/saiku/saiku-auth`, from the packages' `repository` field. */
function repositoryUrl(): string {
  const manifest = JSON.parse(readFileSync(`${root}/packages/core/package.json`, 'utf8')) as {
    repository: { url: string }
  }
  return manifest.repository.url.replace(/^git\+/, '').replace(/\.git$/, '')
}

/** What a check reads: the repository's files by path, and the text of its Markdown. */
export interface Tree {
  readonly files: ReadonlySet<string>
  read(path: string): string
}

export interface DeadLink {
  readonly line: number
  readonly target: string
  readonly reason: string
}

const FENCE = /^\s*(`{3,}|~{3,})/

/** The lines of a Markdown file with fenced code blocks blanked (numbering kept). */
function proseLines(markdown: string): string[] {
  let fence: string | null = null
  return markdown.split('\n').map((line) => {
    const open = FENCE.exec(line)
    if (fence === null) {
      if (open === null) return line
      fence = open[1]!
      return ''
    }
    if (open !== null && open[1]![0] === fence[0] && open[1]!.length >= fence.length && line.trim() === open[1]) {
      fence = null
    }
    return ''
  })
}

/** A line with its code spans replaced by their text, so that a heading reads as GitHub renders it. */
const CODE_SPAN = /(`+)([\s\S]*?[^`])\1(?!`)/g

/** A heading's text as rendered: links and images reduced to their text, HTML tags and emphasis gone. */
function renderedHeading(text: string): string {
  const parts: string[] = []
  let last = 0
  for (const match of text.matchAll(CODE_SPAN)) {
    parts.push(inlineText(text.slice(last, match.index)), match[2]!.trim())
    last = match.index + match[0].length
  }
  parts.push(inlineText(text.slice(last)))
  return parts.join('')
}

function inlineText(text: string): string {
  return text
    .replace(/!?\[((?:[^[\]]|\[[^\]]*\])*)\]\([^)]*\)/g, '$1')
    .replace(/<[^>]+>/g, '')
    .replace(/\*+/g, '')
    .replace(/&amp;/g, '&')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
}

/** The anchors GitHub gives a Markdown file: one per heading (`-1`, `-2` for repeats), and explicit ids. */
export function anchorsOf(markdown: string): Set<string> {
  const slugger = new GithubSlugger()
  const anchors = new Set<string>()
  const lines = proseLines(markdown)
  lines.forEach((line, index) => {
    const atx = /^ {0,3}#{1,6}(?:\s+(.*?))?(?:\s+#+)?\s*$/.exec(line)
    const previous = lines[index - 1] ?? ''
    const setext =
      /^ {0,3}(?:=+|-+)\s*$/.test(line) && previous.trim() !== '' && !/^\s*(?:[-*+>|#]|\d+[.)]\s)/.test(previous)
    if (atx !== null) anchors.add(slugger.slug(renderedHeading(atx[1] ?? '')))
    else if (setext) anchors.add(slugger.slug(renderedHeading(previous.trim())))
    for (const id of line.matchAll(/<[a-z]+\s[^>]*?\b(?:id|name)="([^"]+)"/gi)) anchors.add(id[1]!)
  })
  return anchors
}

/** Every link target in a Markdown file, with its line: inline links and images, reference definitions, HTML. */
export function linksOf(markdown: string): { line: number; target: string }[] {
  const links: { line: number; target: string }[] = []
  proseLines(markdown).forEach((raw, index) => {
    const line = raw.replace(CODE_SPAN, (span) => ' '.repeat(span.length))
    const found = [
      ...[...line.matchAll(/\]\(\s*<([^>]*)>/g)].map((m) => m[1]!),
      ...[...line.matchAll(/\]\(\s*([^\s)<]+)(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/g)].map((m) => m[1]!),
      ...[...line.matchAll(/^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?/g)].map((m) => m[1]!),
      ...[...line.matchAll(/<(?:a|img|link|source)\s[^>]*?\b(?:href|src)="([^"]+)"/gi)].map((m) => m[1]!),
    ]
    for (const target of found) links.push({ line: index + 1, target })
  })
  return links
}

/** The dead links of one Markdown file of the tree; `repository` maps absolute links to this repository. */
export function deadLinks(tree: Tree, file: string, repository: string): DeadLink[] {
  const dead: DeadLink[] = []
  const anchorCache = new Map<string, Set<string>>()
  const anchors = (path: string) => {
    let set = anchorCache.get(path)
    if (set === undefined) anchorCache.set(path, (set = anchorsOf(tree.read(path))))
    return set
  }
  const isDirectory = (path: string) => [...tree.files].some((known) => known.startsWith(`${path}/`))
  const own = new RegExp(
    `^${repository.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/(?:blob|tree|raw)/main/([^?#]*)(?:\\?[^#]*)?(#.*)?$`,
  )

  for (const { line, target } of linksOf(tree.read(file))) {
    let path: string
    let fragment: string | undefined
    const absolute = own.exec(target)
    if (absolute !== null) {
      path = posix.normalize(decodeURIComponent(absolute[1]!)).replace(/\/$/, '')
      fragment = absolute[2]?.slice(1)
    } else if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) {
      continue // another site, mail: never fetched
    } else {
      const [beforeFragment = '', ...rest] = target.split('#')
      fragment = rest.length > 0 ? rest.join('#') : undefined
      const relative = decodeURIComponent(beforeFragment.split('?')[0]!)
      if (relative === '') path = file
      else {
        const joined = relative.startsWith('/') ? relative.slice(1) : posix.join(posix.dirname(file), relative)
        path = posix.normalize(joined).replace(/\/$/, '')
      }
    }
    if (path === '.' || path === '') path = ''
    if (path.startsWith('..')) {
      dead.push({ line, target, reason: 'points outside the repository' })
      continue
    }
    if (path !== '' && !tree.files.has(path) && !isDirectory(path)) {
      dead.push({ line, target, reason: `no file ${path} in the repository` })
      continue
    }
    if (fragment === undefined || fragment === '' || fragment === 'top' || !path.endsWith('.md')) continue
    const anchor = decodeURIComponent(fragment)
    if (!anchors(path).has(anchor)) dead.push({ line, target, reason: `no heading #${anchor} in ${path}` })
  }
  return dead
}

/** The repository as git sees it: tracked files, and new ones that are not ignored. */
function repositoryTree(): Tree {
  const listed = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  })
  const files = new Set(listed.split('\0').filter((path) => path !== ''))
  return { files, read: (path) => readFileSync(`${root}/${path}`, 'utf8') }
}

/** A tree of the given Markdown files, for testing the checker itself. */
function fakeTree(files: Record<string, string>): Tree {
  return { files: new Set(Object.keys(files)), read: (path) => files[path] ?? '' }
}

const REPO = 'https://github.com/saiku/saiku-auth'

describe('the Markdown link check', () => {
  it('finds a heading in the same file by its GitHub slug, and reports one that is not there', () => {
    const tree = fakeTree({
      'a.md': '# Title\n\n## The Options\n\nSee [options](#the-options) and [gone](#options).\n',
    })
    expect(deadLinks(tree, 'a.md', REPO)).toEqual([
      { line: 5, target: '#options', reason: 'no heading #options in a.md' },
    ])
  })

  it('slugs repeated headings -1, -2; drops inline code marks and punctuation; lowercases', () => {
    const markdown = [
      '## Usage',
      '## Usage',
      '### `@saiku/core/store`',
      '## Failed authentication, and shared addresses?',
      '## What `cost()` returns: 0 … n',
      'Setext title',
      '============',
      '<a id="custom-anchor"></a>',
      '',
      '[a](#usage) [b](#usage-1) [c](#saikucorestore) [d](#failed-authentication-and-shared-addresses)',
      '[e](#what-cost-returns-0--n) [f](#setext-title) [g](#custom-anchor) [h](#usage-2)',
    ].join('\n')
    const dead = deadLinks(fakeTree({ 'a.md': markdown }), 'a.md', REPO)
    expect(dead.map(({ target }) => target)).toEqual(['#usage-2'])
  })

  it('checks a relative link to another file and its heading; a directory is a target too', () => {
    const tree = fakeTree({
      'docs/guide.md': '# Guide\n\n## Limits\n',
      'packages/core/README.md': '# core\n\n## Options\n',
      'packages/core/src/index.ts': '',
      'README.md': [
        '[ok](docs/guide.md#limits) [ok](./packages/core/README.md#options) [ok](packages/core/src/)',
        '[no file](docs/missing.md) [no heading](docs/guide.md#scaling) [root](/docs/guide.md#guide)',
        '[not md](packages/core/src/index.ts#L1) [outside](../elsewhere.md)',
      ].join('\n'),
    })
    expect(deadLinks(tree, 'README.md', REPO)).toEqual([
      { line: 2, target: 'docs/missing.md', reason: 'no file docs/missing.md in the repository' },
      { line: 2, target: 'docs/guide.md#scaling', reason: 'no heading #scaling in docs/guide.md' },
      { line: 3, target: '../elsewhere.md', reason: 'points outside the repository' },
    ])
    const fromGuide = fakeTree({
      'docs/guide.md': '[up](../packages/core/README.md#api)',
      'packages/core/README.md': '## API',
    })
    expect(deadLinks(fromGuide, 'docs/guide.md', REPO)).toEqual([])
  })

  it('maps absolute links to this repository onto the local files, and never follows other sites', () => {
    const tree = fakeTree({
      'docs/limits.md': '# Limits\n\n## Rolling windows\n',
      'packages/core/README.md': [
        `[ok](${REPO}/blob/main/docs/limits.md#rolling-windows) [ok](${REPO}/tree/main/docs)`,
        `[gone](${REPO}/blob/main/docs/scaling.md) [bad anchor](${REPO}/blob/main/docs/limits.md#fixed-windows)`,
        '[elsewhere](https://example.com/missing.md#nothing) <https://example.org/> [mail](mailto:a@b.c)',
      ].join('\n'),
    })
    expect(deadLinks(tree, 'packages/core/README.md', REPO)).toEqual([
      { line: 2, target: `${REPO}/blob/main/docs/scaling.md`, reason: 'no file docs/scaling.md in the repository' },
      {
        line: 2,
        target: `${REPO}/blob/main/docs/limits.md#fixed-windows`,
        reason: 'no heading #fixed-windows in docs/limits.md',
      },
    ])
  })

  it('reads reference definitions, images and HTML links; skips code blocks and code spans', () => {
    const markdown = [
      '![shot](docs/shot.png) <img src="docs/gone.png"> <a href="#nowhere">x</a>',
      '[ref]: docs/missing.md',
      '```md',
      '[in a block](#not-checked)',
      '```',
      'Inline `[code](#not-checked)` is text.',
    ].join('\n')
    const dead = deadLinks(fakeTree({ 'a.md': markdown, 'docs/shot.png': '' }), 'a.md', REPO)
    expect(dead.map(({ target }) => target)).toEqual(['docs/gone.png', '#nowhere', 'docs/missing.md'])
  })
})

describe('Markdown links in the repository', () => {
  const tree = repositoryTree()
  const repository = repositoryUrl()
  const markdown = [...tree.files].filter((path) => path.endsWith('.md')).sort()

  it('reads every Markdown file git knows, the guides in docs/ among them', () => {
    expect(markdown).toContain('README.md')
    expect(markdown).toContain('packages/core/README.md')
    expect(markdown).toContain('docs/benchmarks/results.md')
  })

  it.each(markdown)('%s has no dead relative link or #anchor', (file) => {
    const dead = deadLinks(tree, file, repository).map(
      ({ line, target, reason }) => `${file}:${line} ${target}: ${reason}`,
    )
    expect(dead).toEqual([])
  })
})
